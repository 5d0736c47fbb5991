"""Files as 3D Slicer writes them for its MONAI Label extension: one-slice NIfTI volumes, ``.seg.nrrd`` files."""

from __future__ import annotations

from pathlib import Path

import nrrd
import numpy as np
import SimpleITK


def one_slice_nifti(png: Path, out: Path, as_label: bool = False) -> Path:
    """What Slicer's ``saveNode`` writes for a PNG loaded as a volume: a one-slice NIfTI in the PNG's geometry."""
    image = SimpleITK.ReadImage(str(png))
    if image.GetNumberOfComponentsPerPixel() > 1:
        image = SimpleITK.VectorIndexSelectionCast(image, 0)
    if as_label:
        image = SimpleITK.Cast(image > 0, SimpleITK.sitkUInt8)
    SimpleITK.WriteImage(SimpleITK.JoinSeries(image), str(out))
    return out


def slicer_seg_nrrd(mask_hw: np.ndarray, name: str, out: Path) -> Path:
    """A Slicer segmentation file (``.seg.nrrd``, one layer, one segment) of a one-slice volume, cropped to the
    segment's extent as Slicer may save it (``Segmentation_ReferenceImageExtentOffset``)."""
    rows, cols = np.nonzero(mask_hw)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    data = mask_hw[y0:y1, x0:x1].T[..., None].astype(np.uint8)  # x, y, z
    header = {
        "type": "unsigned char",
        "dimension": 3,
        "space": "left-posterior-superior",
        "sizes": list(data.shape),
        "space directions": np.eye(3),
        "space origin": np.array([float(x0), float(y0), 0.0]),
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
        "Segment0_ID": "Segment_1",
        "Segment0_Name": name,
        "Segment0_LabelValue": "1",
        "Segment0_Layer": "0",
        "Segment0_Extent": f"0 {x1 - x0 - 1} 0 {y1 - y0 - 1} 0 0",
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": f"{x0} {y0} 0",
    }
    nrrd.write(str(out), data, header)
    return out
