"""Errors raised for bad input. Each message names the file or argument and the problem."""

from __future__ import annotations


class RadVLSMInputError(ValueError):
    """Bad user input: an image, mask, prompt, path or argument that cannot be used.

    Args:
        message: what is wrong, in words a user can act on.
        source: the file, image ID or argument name the problem is about (prepended to the message).
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class DataValidationError(RadVLSMInputError):
    """A dataset item (image, mask or metadata row) fails validation."""
