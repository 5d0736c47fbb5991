"""Active learning strategies: least reliable automatic prediction first."""

from lib.activelearning.reliability import LeastReliable

__all__ = ["LeastReliable"]
