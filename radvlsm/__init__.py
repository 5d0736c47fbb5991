"""radvlsm: prompt-driven lesion segmentation and diagnosis (Rad-VLSM) for MONAI.

Kept import-light on purpose: ``radvlsm.compat`` is imported at interpreter start-up by a
``.pth`` hook (see ``radvlsm/compat/torchvision_ops.py``), so nothing heavy may load here.
"""

__version__ = "0.1.0"
