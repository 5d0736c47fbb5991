"""radvlsm: prompt-driven lesion segmentation and diagnosis (Rad-VLSM) for MONAI.

Kept import-light on purpose: ``radvlsm.compat`` is imported at interpreter start-up by a
``.pth`` hook (see ``radvlsm/compat/torchvision_ops.py``), so nothing heavy may load here.
Importing it installs the narrow third-party warning filters of :mod:`radvlsm.compat.warnings`
(stdlib only) before any dependency loads.
"""

from radvlsm.compat.warnings import filter_third_party_warnings

__version__ = "0.1.0"

filter_third_party_warnings()
