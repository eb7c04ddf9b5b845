"""Learning-rate schedules that transformers lacks: OneCycle and Noam.

``cosine``, ``linear`` and the other transformers names come from ``transformers.get_scheduler``; the
two here are built by ``CTCTrainer.create_scheduler``. Both peak at the recipe's ``learning_rate``.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from transformers.trainer_utils import SchedulerType

#: Schedules built here; every other name goes to transformers.
CUSTOM_SCHEDULES = ("onecycle", "noam")


def scheduler_names() -> list[str]:
    return [s.value for s in SchedulerType] + list(CUSTOM_SCHEDULES)


def trainer_scheduler_type(name: str) -> str:
    """The ``lr_scheduler_type`` to give TrainingArguments: ours are built in ``create_scheduler`` instead,
    so the Trainer is told ``constant`` (which it never builds for them)."""
    return "constant" if name in CUSTOM_SCHEDULES else name


def noam_factor(step: int, warmup_steps: int) -> float:
    """Noam's ``d_model^-0.5 · min(step^-0.5, step · warmup^-1.5)`` divided by its peak (at ``step == warmup``).

    Scaled so, ``d_model`` cancels out: the rate rises linearly to ``learning_rate`` over the warmup,
    then decays as ``sqrt(warmup / step)``.
    """
    warmup_steps = max(1, warmup_steps)
    if step == 0:
        return 0.0
    return min(step / warmup_steps, math.sqrt(warmup_steps / step))


def create_custom_scheduler(
    name: str, optimizer: torch.optim.Optimizer, num_training_steps: int, num_warmup_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """``onecycle``: torch's OneCycleLR, rising over the warmup from lr/25 to lr, then cosine annealing to lr/2.5e5.
    ``noam``: see :func:`noam_factor`."""
    if name == "onecycle":
        peak = [group["lr"] for group in optimizer.param_groups]
        warmup_share = min(max(1, num_warmup_steps) / max(1, num_training_steps), 0.99)
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peak, total_steps=max(2, num_training_steps), pct_start=warmup_share
        )
    if name == "noam":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(noam_factor, warmup_steps=num_warmup_steps))
    raise ValueError(f"No custom schedule '{name}': the schedules built here are {', '.join(CUSTOM_SCHEDULES)}.")
