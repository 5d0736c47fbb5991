"""Alias of :mod:`lib.monailabel_fixes.safe_paths`, where the MONAI Label 0.8.5 workarounds live together."""

from lib.monailabel_fixes.safe_paths import *  # noqa: F403
