"""MONAI Label's DICOMweb datastore, storing final labels of 2D ultrasound images as DICOM SEG (highdicom).

Everything but :meth:`UltrasoundDICOMwebDatastore.save_label` is MONAI Label's: series are images,
fetched and converted to NIfTI on first use; SEG series in the PACS are the labels. Saving a final
label writes the SEG with :mod:`lib.dicom_seg` (no dcmqi needed), stores it through STOW-RS and keeps a
local copy, as MONAI Label does; other tags stay local.
"""

from __future__ import annotations

import logging
import os
import pathlib
import tempfile
from typing import Any

from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.datastore.utils.convert import binary_to_image
from monailabel.datastore.utils.dicom import dicom_web_upload_dcm
from monailabel.interfaces.datastore import DefaultLabelTag

from lib.dicom_seg import write_seg
from lib.monailabel_fixes.atomic_datastore import store_label, update_datastore_file
from lib.monailabel_fixes.http_errors import client_errors
from lib.monailabel_fixes.safe_paths import check_name

logger = logging.getLogger(__name__)


class UltrasoundDICOMwebDatastore(DICOMWebDatastore):
    """A DICOMweb datastore whose final labels go to the PACS as highdicom SEG objects."""

    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any], label_id: str = ""
    ) -> str:
        """Save a label; a final one is also stored in the PACS as DICOM SEG (its series UID in the label info).

        Args:
            image_id: the image's series instance UID.
            label_filename: NIfTI/NRRD label in the image's geometry, or OHIF's raw ``.bin`` voxels.
            label_tag: ``final`` goes to the PACS; other tags stay local.
            label_info: label info (MONAI Label's ``label_info`` list names the segments).
            label_id: unused (MONAI Label's signature).

        Raises:
            HTTPException: 422 for an image ID or label tag that is not a plain name; 404 for an unknown image.
        """
        with client_errors("datastore label upload"):
            check_name(image_id, "image id")
            check_name(label_tag, "label tag")
        image_uri = self.get_image_uri(image_id)
        converted = ""
        if "".join(pathlib.Path(label_filename).suffixes) == ".bin":
            converted = binary_to_image(image_uri, label_filename)
            label_filename = converted
        try:
            if label_tag == DefaultLabelTag.FINAL:
                image_dir = os.path.realpath(os.path.join(self._datastore.image_path(), image_id))
                with tempfile.TemporaryDirectory() as tmp:
                    seg_file = write_seg(image_dir, label_filename, os.path.join(tmp, "seg.dcm"),
                                         label_info.get("label_info"))  # fmt: skip
                    seg_series = dicom_web_upload_dcm(str(seg_file), self._client)
                image_info = self.get_image_info(image_id)
                label_info.update(
                    {
                        "SeriesInstanceUID": seg_series,
                        "Modality": image_info.get("Modality"),
                        "PatientID": image_info.get("PatientID"),
                        "StudyInstanceUID": image_info.get("StudyInstanceUID"),
                    }
                )
                logger.info("label of %s stored as DICOM SEG series %s", image_id, seg_series)
            return store_label(self, image_id, label_filename, label_tag, label_info, reload=False)
        finally:
            if converted:
                os.unlink(converted)

    def _update_datastore_file(self, lock: bool = True) -> None:
        """Write the local ``datastore_v2.json`` atomically (MONAI Label writes it in place)."""
        update_datastore_file(self, lock)
