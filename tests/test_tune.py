"""`ai2text tune`: Optuna trials through Trainer.hyperparameter_search, and a best recipe that trains as it is."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_RECIPE, TrainedModel

from ai2text_hf.cli import main
from ai2text_hf.training.recipe import RecipeError, load_recipe
from ai2text_hf.training.tune import argument_values, check_search_space

SEARCH = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "d_model": {"type": "categorical", "choices": [64, 96]},  # no TrainingArguments field: reaches model_init
    "grad_clip": {"type": "float", "low": 0.5, "high": 2.0},  # TrainingArguments' max_grad_norm
}


def test_search_space_keys_map_to_training_arguments_or_stay_recipe_keys() -> None:
    assert argument_values({"learning_rate": 0.01, "grad_clip": 0.5, "d_model": 64}) == {
        "learning_rate": 0.01,
        "max_grad_norm": 0.5,
    }


def test_bad_search_spaces_are_refused_with_the_fix() -> None:
    with pytest.raises(RecipeError, match="tune.search_space is empty"):
        check_search_space(load_recipe(TINY_RECIPE))
    with pytest.raises(RecipeError, match=r"unknown recipe key 'learning_rat'.*'learning_rate'"):
        check_search_space(load_recipe(TINY_RECIPE, {"tune.search_space": {"learning_rat": {"low": 0.1, "high": 1}}}))
    with pytest.raises(RecipeError, match="needs low < high"):
        check_search_space(load_recipe(TINY_RECIPE, {"tune.search_space": {"dropout": {"low": 0.3, "high": 0.1}}}))
    with pytest.raises(RecipeError, match="needs a list of choices"):
        check_search_space(load_recipe(TINY_RECIPE, {"tune.search_space": {"d_model": {"type": "categorical"}}}))


def test_tune_runs_trials_and_writes_a_recipe_that_trains(trained_model: TrainedModel, tmp_path: Path) -> None:
    recipe = yaml.safe_load(TINY_RECIPE.read_text(encoding="utf-8"))
    recipe.update({"num_epochs": 1, "max_steps": 3, "disable_tqdm": True, "tune": {"search_space": SEARCH}})
    recipe_path = tmp_path / "tune.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    run = tmp_path / "tune"
    argv = ["tune", "--recipe", str(recipe_path), "--dataset", str(trained_model.dataset_dir), "--output-dir", str(run)]
    assert main([*argv, "--n-trials", "2", "--logging_steps", "1"]) == 0

    trials = json.loads((run / "trials.json").read_text(encoding="utf-8"))
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    assert all(math.isfinite(t["value"]) for t in trials)
    for trial in trials:  # each trial trained with its own values: the model's size and the Trainer's arguments
        checkpoint = max((run / "checkpoints" / f"run-{trial['number']}").glob("checkpoint-*"))
        config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        assert config["d_model"] == trial["params"]["d_model"]
        args = torch.load(checkpoint / "training_args.bin", weights_only=False)
        assert args.learning_rate == pytest.approx(trial["params"]["learning_rate"])
        assert args.max_grad_norm == pytest.approx(trial["params"]["grad_clip"])

    best = min(trials, key=lambda t: t["value"])
    best_recipe = load_recipe(run / "best-recipe.yaml")  # a complete recipe `ai2text train` accepts
    assert best_recipe.d_model == best["params"]["d_model"]
    assert best_recipe.learning_rate == pytest.approx(best["params"]["learning_rate"])
    assert best_recipe.dataset == str(trained_model.dataset_dir)
    assert best_recipe.training_args["max_steps"] == 3
