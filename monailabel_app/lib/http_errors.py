"""Alias of :mod:`lib.monailabel_fixes.http_errors`, where the MONAI Label 0.8.5 workarounds live together."""

from lib.monailabel_fixes.http_errors import *  # noqa: F403
