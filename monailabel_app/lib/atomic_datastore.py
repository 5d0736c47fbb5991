"""Alias of :mod:`lib.monailabel_fixes.atomic_datastore`, where the MONAI Label 0.8.5 workarounds live together."""

from lib.monailabel_fixes.atomic_datastore import *  # noqa: F403
