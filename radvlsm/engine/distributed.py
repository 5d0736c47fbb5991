"""Process-group helpers: which rank this is, whether it is the one that validates, logs and saves.

Everything here also works in a plain single-process run (rank 0 of 1), so callers need no special case.
"""

from __future__ import annotations

import torch


def is_distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group (e.g. under ``torchrun``)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's global rank (0 outside a process group)."""
    return torch.distributed.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the group (1 outside a process group)."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0 and in a single-process run: the process that validates, logs and saves."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op in a single-process run)."""
    if is_distributed():
        torch.distributed.barrier()
