"""Trainer: the bundle's training fed from the datastore, publishing new weights to the infer tasks."""

from lib.trainers.radvlsm import RadVLSMTrainTask

__all__ = ["RadVLSMTrainTask"]
