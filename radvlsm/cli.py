"""``radvlsm`` command line: dataset report, phantom data, prediction, evaluation and DICOM conversion.

Bad input ends with one clear line on stderr and exit status 2, never a bare stack trace.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from radvlsm.config import DEFAULT_BUNDLE
from radvlsm.errors import RadVLSMInputError

logger = logging.getLogger("radvlsm.cli")


def _override(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--network-def`` (the value parsed as JSON when it is JSON: ``32``, ``true``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. variant=tiny)")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _load_predictor(args: argparse.Namespace):
    """The bundle's network (built from its ``inference.json``) with its weights, in the predictor ``inference.json``
    declares (its encoder runtime and embedding cache, as the bundle and the server have)."""
    from radvlsm.config import build_network, bundle_parser
    from radvlsm.models.weights import load_trained_weights

    bundle = Path(args.bundle)
    model = build_network(bundle, **dict(args.network_def or []))
    weights = Path(args.weights) if args.weights else bundle / "models" / "model.pt"
    if weights.is_file():
        load_trained_weights(model, weights)
        logger.info("loaded %s", weights)
    else:
        logger.warning("no trained weights at %s: using the pretrained backbones with untrained heads", weights)
    parser = bundle_parser(bundle)
    parser["network"] = model.eval()  # this network in place of inference.json's (its overrides and weights)
    return parser.get_parsed_content("predictor")


def cmd_data_report(args: argparse.Namespace) -> int:
    """Load a dataset folder and report its class counts and any skipped items."""
    from radvlsm.data.datalist import load_dataset

    report = load_dataset(args.dataset_dir, validate=not args.no_validate)
    print(json.dumps({"root": report.root, "layout": report.layout, "n_images": len(report.items),
                      "class_counts": report.class_counts(), "n_skipped": len(report.skipped),
                      "skipped": report.skipped[:50]}, indent=2))  # fmt: skip
    return 0


def cmd_phantom(args: argparse.Namespace) -> int:
    """Write the synthetic phantom dataset."""
    from radvlsm.data.phantom import ensure_phantom_dataset

    print(ensure_phantom_dataset(args.out, n_images=args.n_images, seed=args.seed))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Segment and diagnose one image (automatic, or with --box / --point prompts)."""
    from PIL import Image

    from radvlsm.data.image_io import read_image_2d

    predictor = _load_predictor(args)
    points = [list(map(float, p.split(","))) for p in args.point] if args.point else None
    box = list(map(float, args.box.split(","))) if args.box else None
    predictor.set_image(read_image_2d(args.image))
    result = predictor.predict(points=points, box=box)
    out = Path(args.output or Path(args.image).with_suffix("").name + "_mask.png")
    Image.fromarray(result.mask * 255).save(out)
    print(json.dumps({"mask": str(out), **result.summary()}, indent=2))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate on every image of a dataset folder (external validation)."""
    from radvlsm.data.datalist import load_dataset
    from radvlsm.engine.evaluation import evaluate

    predictor = _load_predictor(args)
    report = load_dataset(args.dataset_dir)
    summary = evaluate(predictor, report.items, args.output_dir, n_overlays=args.n_overlays)
    print(json.dumps({k: v for k, v in summary.items() if k != "by_scanner"}, indent=2))
    return 0


def _spacing(text: str) -> tuple[float, float]:
    """``"0.1"`` or ``"0.1,0.12"`` (row, column) in mm."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive spacing in mm (ROW[,COLUMN])")
    return (values[0], values[-1])


def cmd_dicom_from_images(args: argparse.Namespace) -> int:
    """PNG/JPEG images (a BUS-BRA folder, an image folder or files) to DICOM US files."""
    from radvlsm.dicom.from_images import ConversionOptions, convert_images

    options = ConversionOptions(pixel_spacing_mm=args.pixel_spacing, namespace=args.namespace,
                                body_part=args.body_part, institution=args.institution,
                                plane_geometry=not args.no_plane_geometry)  # fmt: skip
    written = convert_images(args.inputs, args.out, options, patient_id=args.patient_id)
    print(json.dumps({"out": str(args.out), "n_files": len(written)}, indent=2))
    return 0


def cmd_dicom_to_images(args: argparse.Namespace) -> int:
    """DICOM images (and DICOM SEG labels) to PNG files."""
    from radvlsm.dicom.to_images import convert_dicom

    written = convert_dicom(args.inputs, args.out)
    print(json.dumps({"out": str(args.out), "n_files": len(written)}, indent=2))
    return 0


def _add_dicom_parser(sub: argparse._SubParsersAction) -> None:
    dicom = sub.add_parser("dicom", help="convert 2D ultrasound images to and from DICOM (for a PACS)")
    dsub = dicom.add_subparsers(dest="dicom_command", required=True)
    p = dsub.add_parser("from-images", help=cmd_dicom_from_images.__doc__)
    p.add_argument("inputs", nargs="+", help="BUS-BRA folder(s), PNG/JPEG folder(s) or files")
    p.add_argument("--out", required=True, help="output folder (one subfolder per patient)")
    p.add_argument("--pixel-spacing", type=_spacing, help="ROW[,COLUMN] pixel spacing in mm, when known")
    p.add_argument("--patient-id", help="one patient (and study) for every image")
    p.add_argument("--namespace", default="radvlsm", help="mixed into the UIDs (default radvlsm)")
    p.add_argument("--body-part", default="BREAST", help="BodyPartExamined (default BREAST)")
    p.add_argument("--institution", default="", help="InstitutionName")
    p.add_argument("--no-plane-geometry", action="store_true",
                   help="bare US IOD: no frame of reference or image plane (OHIF cannot overlay labels)")  # fmt: skip
    p.set_defaults(func=cmd_dicom_from_images)
    p = dsub.add_parser("to-images", help=cmd_dicom_to_images.__doc__)
    p.add_argument("inputs", nargs="+", help="DICOM files or folders (searched for *.dcm)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_dicom_to_images)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radvlsm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data-report", help=cmd_data_report.__doc__)
    p.add_argument("dataset_dir", help="BUS-BRA or BUSI folder, or a datalist JSON")
    p.add_argument("--no-validate", action="store_true", help="skip the per-image pixel checks")
    p.set_defaults(func=cmd_data_report)

    p = sub.add_parser("phantom", help=cmd_phantom.__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--n-images", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_phantom)

    for name, func in (("predict", cmd_predict), ("evaluate", cmd_evaluate)):
        p = sub.add_parser(name, help=func.__doc__)
        p.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="bundle folder (default: %(default)s)")
        p.add_argument("--weights", help="model.pt (default: the bundle's models/model.pt)")
        p.add_argument("--network-def", action="append", type=_override, metavar="KEY=VALUE",
                       help="override a network_def key of the bundle's inference.json (repeatable)")  # fmt: skip
        p.set_defaults(func=func)
        if name == "predict":
            p.add_argument("image")
            p.add_argument("--box", help="x1,y1,x2,y2 in pixels")
            p.add_argument("--point", action="append", help="x,y foreground click (repeatable)")
            p.add_argument("--output", help="mask PNG path")
        else:
            p.add_argument("dataset_dir")
            p.add_argument("--output-dir", default="eval")
            p.add_argument("--n-overlays", type=int, default=8)
    _add_dicom_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except RadVLSMInputError as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
