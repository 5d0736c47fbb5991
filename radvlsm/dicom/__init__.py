"""DICOM for 2D ultrasound: PNG/JPEG images to DICOM US objects and back, for loading data into a PACS.

- :mod:`radvlsm.dicom.uids`: study/series/instance UIDs derived from the input, stable across runs.
- :mod:`radvlsm.dicom.from_images`: PNG/JPEG (a BUS-BRA folder, a plain folder or files) -> Ultrasound
  Image Storage objects, one study per patient and one single-frame series per image.
- :mod:`radvlsm.dicom.to_images`: DICOM images (and DICOM SEG labels) -> PNG.
- :mod:`radvlsm.dicom.validation`: the attributes a US object must carry, checked after writing.
"""
