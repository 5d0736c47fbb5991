"""Infer tasks: automatic, interactive (clicks and ROI) and region recognition."""

from lib.infers.auto import RadVLSMAuto
from lib.infers.interactive import RadVLSMInteractive
from lib.infers.region import RadVLSMRegion

__all__ = ["RadVLSMAuto", "RadVLSMInteractive", "RadVLSMRegion"]
