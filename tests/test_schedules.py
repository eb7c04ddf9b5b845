"""Learning-rate curves: OneCycle and Noam built here, cosine and linear from transformers, all peaking at lr."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import TINY_RECIPE
from transformers import TrainingArguments, get_scheduler

from ai2text_hf.training.recipe import load_recipe
from ai2text_hf.training.schedules import create_custom_scheduler, noam_factor, trainer_scheduler_type
from ai2text_hf.training.trainer import CTCTrainer, build_model, build_tokenizer

PEAK = 1e-3
STEPS = 200
WARMUP = 20


def _curve(name: str) -> list[float]:
    """The learning rate each of STEPS optimizer steps uses."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=PEAK)
    if name in ("onecycle", "noam"):
        scheduler = create_custom_scheduler(name, optimizer, STEPS, WARMUP)
    else:
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=WARMUP, num_training_steps=STEPS)
    rates = []
    for _ in range(STEPS):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_noam_rises_linearly_to_the_peak_then_decays_as_inverse_square_root() -> None:
    rates = _curve("noam")
    assert rates[0] == 0.0
    assert rates[WARMUP // 2] == pytest.approx(PEAK / 2)
    assert max(rates) == pytest.approx(PEAK) and rates.index(max(rates)) == WARMUP
    assert rates[4 * WARMUP] == pytest.approx(PEAK / 2)  # sqrt(20 / 80)
    assert rates[9 * WARMUP] == pytest.approx(PEAK / 3)  # sqrt(20 / 180)
    assert all(a <= b for a, b in zip(rates[:WARMUP], rates[1 : WARMUP + 1]))
    assert all(a >= b for a, b in zip(rates[WARMUP:], rates[WARMUP + 1 :]))


def test_noam_is_the_textbook_formula_scaled_to_the_peak() -> None:
    d_model = 256
    textbook = [d_model**-0.5 * min(s**-0.5, s * WARMUP**-1.5) for s in range(1, STEPS)]
    scale = PEAK / max(textbook)
    assert [PEAK * noam_factor(s, WARMUP) for s in range(1, STEPS)] == pytest.approx([scale * t for t in textbook])


def test_onecycle_warms_up_to_the_peak_then_anneals_far_below_it() -> None:
    rates = _curve("onecycle")
    assert rates[0] == pytest.approx(PEAK / 25)  # torch's default div_factor
    peak_step = rates.index(max(rates))
    assert max(rates) == pytest.approx(PEAK) and abs(peak_step - WARMUP) <= 1
    assert rates[-1] < PEAK / 1e4
    assert all(a >= b for a, b in zip(rates[peak_step:], rates[peak_step + 1 :]))


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_transformers_schedules_warm_up_then_decay_to_zero(name: str) -> None:
    rates = _curve(name)
    assert rates[0] == 0.0 and max(rates) == pytest.approx(PEAK) and rates.index(max(rates)) == WARMUP
    middle = WARMUP + (STEPS - WARMUP) // 2
    expected = PEAK / 2 if name == "linear" else PEAK * 0.5 * (1 + math.cos(math.pi * 0.5))
    assert rates[middle] == pytest.approx(expected, rel=0.02)
    assert rates[-1] < PEAK / 50


def test_only_our_schedules_are_hidden_from_training_arguments() -> None:
    assert trainer_scheduler_type("noam") == trainer_scheduler_type("onecycle") == "constant"
    assert trainer_scheduler_type("cosine") == "cosine"


@pytest.mark.parametrize("name", ["noam", "onecycle", "cosine"])
def test_the_trainer_builds_the_recipes_schedule(name: str, tmp_path: Path) -> None:
    recipe = load_recipe(TINY_RECIPE, {"lr_scheduler": name, "learning_rate": PEAK})
    arguments = TrainingArguments(
        output_dir=str(tmp_path),
        learning_rate=PEAK,
        warmup_steps=WARMUP,
        lr_scheduler_type=trainer_scheduler_type(name),
        use_cpu=True,
        report_to=[],
    )
    trainer = CTCTrainer(model=build_model(recipe, build_tokenizer(recipe, [])), args=arguments, recipe=recipe)
    trainer.create_optimizer_and_scheduler(num_training_steps=STEPS)
    rates = []
    for _ in range(STEPS):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert rates == pytest.approx(_curve(name))
