"""The wall-clock budget (``max_train_minutes``): stop in time, and anneal the learning rate in time.

A step-based schedule sized for ``num_epochs`` is cut off mid-way when the clock runs out first (a
slower machine, a busier one), and the run ends at a high learning rate, short of what the recipe
reaches elsewhere. With ``fit_schedule_to_budget`` (the default) the schedule follows whichever runs
out first, steps or minutes: each step, its position is moved forward to the elapsed share of the
budget, so the warmup, the decay and the final low rate all happen before the budget ends.

With several processes, rank 0's clock decides for all: two ranks that disagreed about stopping would
hang in the next all-reduce, and two that disagreed about the learning rate would drift apart.

The progress bar's total follows the budget too (:class:`BudgetProgress`): the steps the run will reach
before the clock ends it, so its time left is the budget's.
"""

from __future__ import annotations

import logging
import math
import time

import torch
from accelerate import PartialState
from accelerate.utils import broadcast
from transformers import ProgressCallback, TrainerCallback

from .recipe import Recipe

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
        self.begin = (self.start, 0)  # when and at which step this process began training
        self.last_elapsed = 0.0  # the budget spent at the latest step

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        """A resumed run continues the budget where its fitted schedule stood, rather than starting it over."""
        spent = 0.0
        if self.fit_schedule and lr_scheduler is not None and state.global_step > 0 and state.max_steps > 0:
            spent = min(lr_scheduler.last_epoch / state.max_steps, 1.0) * self.seconds
        now = time.monotonic()
        self.start = now - spent
        self.begin = (now, state.global_step)
        self.last_elapsed = spent

    def expected_steps(self, global_step: int, max_steps: int) -> int:
        """The steps the run will reach: ``max_steps``, or fewer when the budget ends it first at this pace."""
        began, first_step = self.begin
        done, seconds = global_step - first_step, time.monotonic() - began
        if done <= 0 or seconds <= 0:
            return max_steps
        remaining = max(0.0, self.seconds - self.last_elapsed)
        return min(max_steps, global_step + math.ceil(remaining * done / seconds))

    def elapsed(self) -> float:
        """Seconds since training began, as rank 0 measures them."""
        state = PartialState()
        if state.num_processes == 1:
            return time.monotonic() - self.start
        clock = torch.tensor([time.monotonic() - self.start], dtype=torch.float64, device=state.device)
        return float(broadcast(clock, from_process=0).item())

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        elapsed = self.last_elapsed = self.elapsed()
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


class BudgetProgress(ProgressCallback):
    """The Trainer's progress bar, its total the steps that ``limit`` lets the run reach (the planned steps
    until the first step's pace is known), so the time left it shows ends with the budget."""

    def __init__(self, limit: WallClockLimit):
        super().__init__()
        self.limit = limit

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self.training_bar.total = self.limit.expected_steps(state.global_step, state.max_steps)
        super().on_step_end(args, state, control, **kwargs)


def log_run_length(recipe: Recipe, steps_per_epoch: int | None, max_steps: int) -> None:
    """Says at the start what will end the run: its epochs or steps, or the wall-clock budget."""
    epochs = f"{recipe.num_epochs:g} epoch{'' if recipe.num_epochs == 1 else 's'}"
    if max_steps > 0:
        length = f"{max_steps} steps (max_steps)"
    elif steps_per_epoch:
        length = f"{epochs} ({math.ceil(recipe.num_epochs * steps_per_epoch)} steps)"
    else:
        length = epochs
    if not recipe.max_train_minutes:
        logger.info("Run length: %s.", length)
        return
    schedule = (
        "the learning-rate schedule ends with whichever comes first"
        if recipe.fit_schedule_to_budget
        else "the learning-rate schedule is planned for the steps (fit_schedule_to_budget: false)"
    )
    logger.info(
        "Run length: %s or %g minutes of training (max_train_minutes), whichever comes first; %s.",
        length, recipe.max_train_minutes, schedule,
    )  # fmt: skip
