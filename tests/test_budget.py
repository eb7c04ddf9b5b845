"""The wall-clock budget stops training and fits the learning-rate schedule into the minutes given."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_RECIPE
from test_checkpoints import SMALL, _history
from transformers import ProgressCallback, TrainerControl, TrainerState, TrainingArguments, get_scheduler

from ai2text_hf.training import budget
from ai2text_hf.training.budget import BudgetProgress, WallClockLimit, budget_position
from ai2text_hf.training.recipe import load_recipe
from ai2text_hf.training.schedules import create_custom_scheduler
from ai2text_hf.training.trainer import build_trainer, train

PEAK = 1e-3


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_steps(callback: WallClockLimit, scheduler, clock: Clock, seconds_per_step: float, steps: int, max_steps: int):
    """What Trainer does around our callback: optimizer step, scheduler step, then ``on_step_end``."""
    args = TrainingArguments(output_dir="unused", report_to=[])
    state, control = TrainerState(max_steps=max_steps), TrainerControl()
    callback.on_train_begin(args, state, control)
    lrs = []
    for step in range(1, steps + 1):
        clock.now += seconds_per_step
        scheduler.optimizer.step()
        scheduler.step()
        state.global_step = step
        callback.on_step_end(args, state, control, lr_scheduler=scheduler)
        lrs.append(scheduler.get_last_lr()[0])
        if control.should_training_stop:
            break
    return lrs, control


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(budget.time, "monotonic", clock)
    return clock


def cosine(max_steps: int, warmup: int = 0):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    return get_scheduler("cosine", optimizer, num_warmup_steps=warmup, num_training_steps=max_steps)


def test_budget_position_is_the_elapsed_share_of_the_steps_and_never_past_the_last():
    assert budget_position(30, 60, 1000) == 500
    assert budget_position(600, 60, 1000) == 999


def test_schedule_anneals_by_the_end_of_the_budget_when_the_clock_runs_out_first(clock):
    scheduler = cosine(max_steps=1000, warmup=100)
    # 6 s a step against a 1-minute budget: the run gets 10 of its 1,000 planned steps.
    lrs, control = run_steps(WallClockLimit(1), scheduler, clock, 6.0, steps=1000, max_steps=1000)
    assert control.should_training_stop and len(lrs) == 10
    assert lrs[4] == pytest.approx(PEAK * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 400 / 900)).item()))
    assert lrs[-1] < 0.03 * PEAK  # the last step before the budget ends runs at the bottom of the cosine


def test_schedule_is_left_alone_when_the_steps_run_out_first(clock):
    fitted, reference = cosine(max_steps=50), cosine(max_steps=50)
    lrs, control = run_steps(WallClockLimit(60), fitted, clock, 1.0, steps=50, max_steps=50)
    expected = []
    for _ in range(50):
        reference.optimizer.step()
        reference.step()
        expected.append(reference.get_last_lr()[0])
    assert not control.should_training_stop
    assert lrs == expected


def test_a_resumed_run_continues_the_budget_where_its_schedule_stood(clock):
    scheduler = cosine(max_steps=1000)
    for _ in range(500):  # the checkpoint's scheduler: half-way through its steps
        scheduler.optimizer.step()
        scheduler.step()
    callback = WallClockLimit(1)
    args = TrainingArguments(output_dir="unused", report_to=[])
    callback.on_train_begin(
        args, TrainerState(max_steps=1000, global_step=500), TrainerControl(), lr_scheduler=scheduler
    )
    assert callback.elapsed() == pytest.approx(30.0)  # half of the one-minute budget already spent


def test_without_fit_schedule_the_budget_only_stops_training(clock):
    scheduler = cosine(max_steps=1000)
    lrs, control = run_steps(WallClockLimit(1, fit_schedule=False), scheduler, clock, 6.0, steps=1000, max_steps=1000)
    assert control.should_training_stop
    assert lrs[-1] > 0.99 * PEAK  # what the budget option prevents: stopping at the peak rate


def test_onecycle_is_fitted_to_the_budget_too(clock):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    scheduler = create_custom_scheduler("onecycle", optimizer, num_training_steps=100, num_warmup_steps=10)
    lrs, control = run_steps(WallClockLimit(1), scheduler, clock, 7.0, steps=100, max_steps=100)
    assert control.should_training_stop
    assert lrs[-1] < 0.05 * PEAK


@pytest.mark.parametrize(("max_steps", "expected"), [(1000, 30), (20, 20)])
def test_the_progress_bar_counts_the_steps_the_budget_lets_the_run_reach(clock, max_steps: int, expected: int):
    """2 s a step against a 1-minute budget: 30 steps, unless the run plans fewer."""
    limit = WallClockLimit(1)
    progress = BudgetProgress(limit)
    args = TrainingArguments(output_dir="unused", report_to=[])
    state, control = TrainerState(max_steps=max_steps), TrainerControl()
    limit.on_train_begin(args, state, control)
    progress.on_train_begin(args, state, control)
    assert progress.training_bar.total == max_steps  # the pace is not known before the first step
    for step in range(1, 11):
        clock.now += 2.0
        state.global_step = step
        limit.on_step_end(args, state, control)
        progress.on_step_end(args, state, control)
    assert progress.training_bar.total == expected and progress.training_bar.n == 10
    progress.on_train_end(args, state, control)


def test_a_budgeted_run_shows_the_budgets_progress_bar(small_dataset: Path, tmp_path: Path) -> None:
    overrides = {**SMALL, "max_train_minutes": 5, "disable_tqdm": False}
    trainer, _ = build_trainer(load_recipe(TINY_RECIPE, overrides), small_dataset, tmp_path / "run")
    bars = [type(c) for c in trainer.callback_handler.callbacks if isinstance(c, ProgressCallback)]
    assert bars == [BudgetProgress]


def test_a_budgeted_run_stops_early_and_ends_at_a_low_learning_rate(small_dataset: Path, tmp_path: Path) -> None:
    """A real Trainer run planned for 200 epochs with a 6-second budget: it stops, annealed, and keeps a model."""
    overrides = {**SMALL, "num_epochs": 200, "max_train_minutes": 0.1, "warmup_steps": 0}
    result = train(load_recipe(TINY_RECIPE, overrides), small_dataset, tmp_path / "run")
    history = _history(result.run_dir)
    rates = [entry["learning_rate"] for entry in history if "learning_rate" in entry]
    assert history[-1]["epoch"] < 200
    assert rates[-1] < 0.1 * SMALL["learning_rate"]
    assert (result.model_dir / "model.safetensors").is_file()
