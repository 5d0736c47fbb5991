"""Rad-VLSM MONAI Label app: task configs, infer tasks, trainer, scoring and active learning."""
