"""Deterministic DICOM UIDs: the same input gives the same study, series and instance UIDs on every run."""

from __future__ import annotations

from pydicom.uid import PYDICOM_ROOT_UID, UID, generate_uid

DEFAULT_NAMESPACE = "radvlsm"


def stable_uid(kind: str, *parts: str, namespace: str = DEFAULT_NAMESPACE) -> UID:
    """A UID hashed from ``(namespace, kind, *parts)`` under pydicom's root (``1.2.826.0.1.3680043.8.498.``).

    Args:
        kind: what the UID names (``"study"``, ``"series"``, ``"instance"``).
        parts: the input's identity, e.g. the patient ID, or the image ID and its pixel digest.
        namespace: separates datasets that reuse patient or image IDs.
    """
    return generate_uid(prefix=PYDICOM_ROOT_UID, entropy_srcs=[namespace, kind, *map(str, parts)])
