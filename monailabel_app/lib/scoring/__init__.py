"""Scoring methods: reliability and uncertainty of the automatic model on unlabeled images."""

from lib.scoring.reliability import ReliabilityScoring

__all__ = ["ReliabilityScoring"]
