"""The wall-clock budget (``max_train_minutes``): stop in time, and anneal the learning rate in time.

A step-based schedule sized for ``num_epochs`` is cut off mid-way when the clock runs out first (a
slower machine, a busier one), and the run ends at a high learning rate, short of what the recipe
reaches elsewhere. With ``fit_schedule_to_budget`` (the default) the schedule follows whichever runs
out first, steps or minutes: each step, its position is moved forward to the elapsed share of the
budget, so the warmup, the decay and the final low rate all happen before the budget ends.

With several processes, rank 0's clock decides for all: two ranks that disagreed about stopping would
hang in the next all-reduce, and two that disagreed about the learning rate would drift apart.
"""

from __future__ import annotations

import logging
import time

import torch
from accelerate import PartialState
from accelerate.utils import broadcast
from transformers import TrainerCallback

logger = logging.getLogger("ai2text_hf.training")


def budget_position(elapsed: float, budget: float, max_steps: int) -> int:
    """The schedule step that ``elapsed`` seconds of a ``budget`` correspond to (at most the last step)."""
    return min(max_steps - 1, int(elapsed / budget * max_steps))


class WallClockLimit(TrainerCallback):
    """Stops training after ``minutes`` (the epoch-end evaluation and best-model selection still run),
    and with ``fit_schedule`` keeps the learning-rate schedule at least as far along as the clock."""

    def __init__(self, minutes: float, fit_schedule: bool = True):
        self.seconds = minutes * 60
        self.fit_schedule = fit_schedule
        self.start = time.monotonic()

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        """A resumed run continues the budget where its fitted schedule stood, rather than starting it over."""
        spent = 0.0
        if self.fit_schedule and lr_scheduler is not None and state.global_step > 0 and state.max_steps > 0:
            spent = min(lr_scheduler.last_epoch / state.max_steps, 1.0) * self.seconds
        self.start = time.monotonic() - spent

    def elapsed(self) -> float:
        """Seconds since training began, as rank 0 measures them."""
        state = PartialState()
        if state.num_processes == 1:
            return time.monotonic() - self.start
        clock = torch.tensor([time.monotonic() - self.start], dtype=torch.float64, device=state.device)
        return float(broadcast(clock, from_process=0).item())

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        elapsed = self.elapsed()
        schedule_over = False
        if self.fit_schedule and lr_scheduler is not None and state.max_steps > 0:
            position = budget_position(elapsed, self.seconds, state.max_steps)
            if position > lr_scheduler.last_epoch:
                # Trainer has already stepped the scheduler for this step: jump to where the clock is.
                lr_scheduler.last_epoch = position - 1
                lr_scheduler.step()
            # A schedule stepped past its end misbehaves (a cosine climbs again): when it is over, so is training.
            schedule_over = position >= state.max_steps - 1
        if elapsed > self.seconds or schedule_over:
            logger.info(
                "Wall-clock budget of %.1f min reached at step %d: stopping.", self.seconds / 60, state.global_step
            )
            control.should_training_stop = True
        return control
