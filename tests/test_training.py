"""Training: recipes, the duration-bucketed sampler, the run folder and the loss of the fixture run."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CODE_FILES, RECIPE_OVERRIDES, TINY_RECIPE, TrainedModel

from ai2text_hf.data.prepare import load_prepared
from ai2text_hf.data.sampler import DurationBatchSampler
from ai2text_hf.training.recipe import Recipe, RecipeError, load_recipe, parse_overrides
from ai2text_hf.training.trainer import train

# ---------------------------------------------------------------------------------------------------
# The fixture's training run
# ---------------------------------------------------------------------------------------------------


def _log_history(run_dir: Path) -> list[dict]:
    states = sorted((run_dir / "checkpoints").glob("checkpoint-*/trainer_state.json"),
                    key=lambda p: int(p.parent.name.split("-")[1]))
    assert states, f"no checkpoint with trainer_state.json in {run_dir / 'checkpoints'}"
    return json.loads(states[-1].read_text(encoding="utf-8"))["log_history"]


def test_train_loss_falls(trained_model: TrainedModel) -> None:
    losses = [entry["loss"] for entry in _log_history(trained_model.run_dir) if "loss" in entry]
    assert len(losses) >= 10
    assert all(np.isfinite(losses))
    # CTC loss on this corpus starts around 4-6 (uniform over 96 classes) and must end far below.
    assert losses[-1] < 0.5 * losses[0], losses
    evals = [entry["eval_cer"] for entry in _log_history(trained_model.run_dir) if "eval_cer" in entry]
    assert min(evals) < evals[0]


def test_run_folder_layout(trained_model: TrainedModel) -> None:
    run = trained_model.run_dir
    model = run / "model"
    names = {p.name for p in model.iterdir()}
    expected = {"config.json", "model.safetensors", "tokenizer_config.json", "vocab.json", *CODE_FILES}
    assert expected <= names, f"missing {sorted(expected - names)}"
    assert names & {"processor_config.json", "preprocessor_config.json"}, "no feature extractor settings"
    assert (run / "checkpoints").is_dir() and list((run / "checkpoints").glob("checkpoint-*"))
    log = (run / "logs" / "training.log").read_text(encoding="utf-8")
    assert "Summary:" in log and "Val CER" in log and "Saved best model" in log
    assert list((run / "logs").glob("**/events.out.tfevents.*")), "no TensorBoard event file under logs/"
    saved = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
    assert saved["num_epochs"] == RECIPE_OVERRIDES["num_epochs"]
    assert saved["d_model"] == yaml.safe_load(TINY_RECIPE.read_text())["d_model"]


def test_training_arguments_reach_the_trainer(trained_model: TrainedModel) -> None:
    """``disable_tqdm`` is no recipe key: the fixture recipe passed it through to TrainingArguments."""
    saved = yaml.safe_load((trained_model.run_dir / "recipe.yaml").read_text(encoding="utf-8"))
    assert saved["training_args"] == {"disable_tqdm": True}
    checkpoint = next((trained_model.run_dir / "checkpoints").glob("checkpoint-*"))
    args = torch.load(checkpoint / "training_args.bin", weights_only=False)
    assert args.disable_tqdm is True and args.num_train_epochs == RECIPE_OVERRIDES["num_epochs"]


def test_feature_mismatch_stops_training_with_a_clear_error(trained_model: TrainedModel, tmp_path: Path) -> None:
    recipe = load_recipe(TINY_RECIPE, {"n_mels": 40})
    with pytest.raises(ValueError, match=r"feature_size: dataset 80 vs model 40.*[Pp]repare the data again"):
        train(recipe, dataset_dir=trained_model.dataset_dir, output_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()


# ---------------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------------


def _recipe_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_recipe_key_names_the_closest_valid_one(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"unknown recipe key 'learning_rat'.*Did you mean 'learning_rate'\?"):
        load_recipe(_recipe_file(tmp_path, "learning_rat: 0.01\n"))
    with pytest.raises(RecipeError, match=r"command line: unknown recipe key 'num_epoch'.*'num_epochs'"):
        load_recipe(TINY_RECIPE, parse_overrides(["--num-epoch", "3"]))


def test_command_line_overrides_beat_the_file(tmp_path: Path) -> None:
    path = _recipe_file(tmp_path, "learning_rate: 0.01\nnum_epochs: 5\nd_model: 64\n")
    overrides = parse_overrides(["--learning-rate", "5e-4", "--num_epochs=3", "--spec_augment", "false"])
    assert overrides == {"learning_rate": 5e-4, "num_epochs": 3, "spec_augment": False}
    recipe = load_recipe(path, overrides)
    assert (recipe.learning_rate, recipe.num_epochs, recipe.spec_augment) == (5e-4, 3, False)
    assert recipe.d_model == 64  # from the file
    assert recipe.d_ff == Recipe().d_ff  # default


def test_one_setting_under_two_names_is_refused_naming_both_and_the_source(tmp_path: Path) -> None:
    path = _recipe_file(tmp_path, "num_epochs: 5\nnum_train_epochs: 3\n")
    with pytest.raises(RecipeError, match=rf"{re.escape(str(path))} sets both 'num_epochs' and 'num_train_epochs'"):
        load_recipe(path)
    path = _recipe_file(tmp_path, "grad_clip: 1.0\ntraining_args:\n  max_grad_norm: 0.5\n")
    with pytest.raises(RecipeError, match=r"sets both 'grad_clip' and 'max_grad_norm'.*the recipe key is 'grad_clip'"):
        load_recipe(path)
    with pytest.raises(RecipeError, match=r"command line sets both 'num_epochs' and 'num_train_epochs'"):
        load_recipe(TINY_RECIPE, parse_overrides(["--num_epochs", "3", "--num_train_epochs", "4"]))


def test_a_training_arguments_name_sets_its_recipe_key(tmp_path: Path) -> None:
    path = _recipe_file(tmp_path, "num_train_epochs: 3\nmax_grad_norm: 0.5\ngradient_accumulation_steps: 2\n")
    recipe = load_recipe(path)
    assert (recipe.num_epochs, recipe.grad_clip, recipe.grad_accum_steps, recipe.training_args) == (3, 0.5, 2, {})
    # Across sources the usual precedence holds, whichever name each uses: the command line wins.
    assert load_recipe(path, parse_overrides(["--num_epochs", "7"])).num_epochs == 7


def test_a_run_length_on_the_command_line_ends_the_recipes_time_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _recipe_file(tmp_path, "num_epochs: 12\nmax_train_minutes: 20\n")
    assert load_recipe(path).max_train_minutes == 20
    with caplog.at_level(logging.WARNING, logger="ai2text_hf.training"):
        recipe = load_recipe(path, parse_overrides(["--num_epochs", "20"]))
    assert (recipe.num_epochs, recipe.max_train_minutes) == (20, None)
    assert "max_train_minutes: 20 no longer applies (add --max_train_minutes 20" in caplog.text
    assert load_recipe(path, parse_overrides(["--max_steps", "50"])).max_train_minutes is None
    both = load_recipe(path, parse_overrides(["--num_epochs", "20", "--max_train_minutes", "30"]))
    assert (both.num_epochs, both.max_train_minutes) == (20, 30)
    assert load_recipe(path, parse_overrides(["--learning_rate", "1e-3"])).max_train_minutes == 20


def test_training_arguments_fields_pass_through(tmp_path: Path) -> None:
    path = _recipe_file(tmp_path, "eval_accumulation_steps: 4\ntraining_args:\n  disable_tqdm: true\n")
    recipe = load_recipe(path, parse_overrides(["--dataloader_drop_last", "true"]))
    assert recipe.training_args == {"eval_accumulation_steps": 4, "disable_tqdm": True, "dataloader_drop_last": True}


def test_bad_recipe_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="learning_rate must be positive"):
        load_recipe(TINY_RECIPE, {"learning_rate": 0})
    with pytest.raises(RecipeError, match="vocab must be"):
        load_recipe(TINY_RECIPE, {"vocab": "letters"})
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="needs a value"):
        parse_overrides(["--learning_rate"])


def test_shipped_recipes_load() -> None:
    for path in sorted(TINY_RECIPE.parent.glob("*.yaml")):
        recipe = load_recipe(path)
        config = recipe.model_config(vocab_size=96, pad_token_id=0)
        assert config.d_model == recipe.d_model and config.block_type == recipe.block_type


# ---------------------------------------------------------------------------------------------------
# DurationBatchSampler
# ---------------------------------------------------------------------------------------------------

DURATIONS = np.random.default_rng(0).uniform(0.6, 9.0, size=300).tolist()


def _check_epoch(sampler: DurationBatchSampler, durations: list[float]) -> list[list[int]]:
    batches = list(sampler)
    assert len(batches) == len(sampler)
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(len(durations))), "every index exactly once per epoch"
    for batch in batches:
        assert max(durations[i] for i in batch) * len(batch) <= sampler.max_batch_seconds + 1e-9
        if sampler.max_batch_size is not None:
            assert len(batch) <= sampler.max_batch_size
    return batches


@pytest.mark.parametrize("max_batch_size", [None, 4])
def test_sampler_respects_the_budget_and_covers_every_index_once(max_batch_size: int | None) -> None:
    sampler = DurationBatchSampler(DURATIONS, max_batch_seconds=30, max_batch_size=max_batch_size, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        _check_epoch(sampler, DURATIONS)


def test_sampler_is_deterministic_per_seed_and_epoch_and_changes_between_epochs() -> None:
    def batches(seed: int, epoch: int) -> list[list[int]]:
        sampler = DurationBatchSampler(DURATIONS, max_batch_seconds=30, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert batches(1, 0) == batches(1, 0)
    assert batches(1, 2) == batches(1, 2)
    assert batches(1, 0) != batches(1, 1)
    assert batches(1, 0) != batches(2, 0)
    # Back and forth between epochs rebuilds the same batches (what a resumed run relies on).
    sampler = DurationBatchSampler(DURATIONS, max_batch_seconds=30, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_sampler_without_shuffle_is_sorted_and_fixed() -> None:
    sampler = DurationBatchSampler(DURATIONS, max_batch_seconds=30, shuffle=False)
    first = _check_epoch(sampler, DURATIONS)
    sampler.set_epoch(5)
    assert list(sampler) == first
    order = [i for batch in first for i in batch]
    assert [DURATIONS[i] for i in order] == sorted(DURATIONS)


def test_sampler_refuses_an_utterance_longer_than_the_budget() -> None:
    with pytest.raises(ValueError, match="max_batch_seconds"):
        DurationBatchSampler([1.0, 12.0], max_batch_seconds=10)


def test_sampler_padding_share_is_small_on_the_fixture_corpus(trained_model: TrainedModel) -> None:
    durations = list(load_prepared(trained_model.dataset_dir)["train"]["duration"])
    recipe = load_recipe(TINY_RECIPE)
    sampler = DurationBatchSampler(durations, max_batch_seconds=recipe.max_batch_seconds, seed=recipe.seed)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = _check_epoch(sampler, durations)
        padded = sum(max(durations[i] for i in batch) * len(batch) for batch in batches)
        share = 1 - sum(durations) / padded
        assert share == pytest.approx(sampler.padding_share())
        assert share < 0.10, share
