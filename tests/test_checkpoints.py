"""Checkpoints: validate_every/save_every, rotation, atomic saves and resume resolution, sampler position,
EMA weights and checkpoint averaging — on one short real training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_RECIPE
from safetensors.torch import load_file
from transformers import pipeline

from ai2text_hf.cli import main
from ai2text_hf.data.prepare import load_prepared
from ai2text_hf.data.sampler import DurationBatchSampler
from ai2text_hf.data.versions import audio_file, read_manifest
from ai2text_hf.training.average import average_checkpoints, last_checkpoints
from ai2text_hf.training.checkpoints import (
    STAGING,
    check_resume_position,
    complete_checkpoints,
    read_state,
    resolve_resume,
    rotate,
)
from ai2text_hf.training.recipe import load_recipe
from ai2text_hf.training.trainer import build_trainer, train

# A model small enough that an epoch of the small dataset takes about a second.
SMALL = {
    "d_model": 32,
    "num_encoder_layers": 1,
    "num_heads": 2,
    "d_ff": 64,
    "learning_rate": 3e-3,
    "max_batch_seconds": 20,
    "logging_steps": 1,
    "disable_tqdm": True,
}


@pytest.fixture(scope="module")
def run(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 epochs, evaluated every 2 (and at the end), saved every epoch, rotation limit 1, EMA on."""
    overrides = {
        **SMALL,
        "num_epochs": 3,
        "validate_every": 2,
        "save_every": 1,
        "save_total_limit": 1,
        "ema": {"enabled": True, "decay": 0.9},
    }
    return train(load_recipe(TINY_RECIPE, overrides), small_dataset, tmp_path_factory.mktemp("ckpt") / "run").run_dir


def _validation_wav(dataset: Path) -> str:
    return str(audio_file(read_manifest(dataset), load_prepared(dataset)["validation"][0]["file_path"]))


def _history(run_dir: Path) -> list[dict]:
    last = complete_checkpoints(run_dir / "checkpoints")[-1]
    return json.loads((last / "trainer_state.json").read_text())["log_history"]


def test_validate_every_evaluates_every_n_epochs_and_always_the_last(run: Path) -> None:
    assert [e["epoch"] for e in _history(run) if "eval_cer" in e] == [2.0, 3.0]


def test_save_every_checkpoints_survive_the_rotation_limit(run: Path) -> None:
    found = complete_checkpoints(run / "checkpoints")
    assert len(found) == 3, found  # save_total_limit 1, but every one is a save_every checkpoint
    assert all(read_state(p)["keep"] for p in found)
    assert not (run / "checkpoints" / STAGING).exists()


def test_checkpoints_record_the_sampler_position(run: Path, small_dataset: Path) -> None:
    durations = list(load_prepared(small_dataset)["train"]["duration"])
    sampler = DurationBatchSampler(durations, SMALL["max_batch_seconds"], seed=42)
    for epoch, checkpoint in enumerate(complete_checkpoints(run / "checkpoints"), start=1):
        position = read_state(checkpoint)["sampler"]
        assert position["epoch"] == epoch and position["global_batches_done"] == 0
        assert position["fingerprint"] == sampler.fingerprint(epoch)
        assert read_state(checkpoint)["global_step"] == epoch * len(sampler)


def test_resume_refuses_a_run_that_would_rebuild_other_batches(run: Path, small_dataset: Path) -> None:
    durations = list(load_prepared(small_dataset)["train"]["duration"])
    checkpoint = str(complete_checkpoints(run / "checkpoints")[0])
    same = DurationBatchSampler(durations, SMALL["max_batch_seconds"], seed=42)
    assert check_resume_position(checkpoint, same, 1)["epoch"] == 1
    other = DurationBatchSampler(durations, SMALL["max_batch_seconds"], seed=7)
    with pytest.raises(ValueError, match="another batch order.*seed"):
        check_resume_position(checkpoint, other, 1)


def test_ema_weights_are_evaluated_and_saved_as_a_pipeline_model(run: Path, small_dataset: Path) -> None:
    evals = [e for e in _history(run) if "eval_cer" in e]
    assert all("eval_ema_cer" in e and "eval_ema_loss" in e for e in evals)
    assert evals[-1]["eval_ema_loss"] != evals[-1]["eval_loss"]
    assert all((p / "ema.pt").is_file() for p in complete_checkpoints(run / "checkpoints"))
    ema, trained = load_file(run / "model-ema" / "model.safetensors"), load_file(run / "model" / "model.safetensors")
    assert ema.keys() == trained.keys() and any(not torch.equal(ema[k], trained[k]) for k in ema)
    wav = _validation_wav(small_dataset)
    assert isinstance(pipeline("automatic-speech-recognition", model=str(run / "model-ema"))(wav)["text"], str)
    assert "Val CER (EMA weights)" in (run / "logs" / "training.log").read_text(encoding="utf-8")


def test_the_trainer_takes_its_settings_and_its_sampler_from_its_recipe(small_dataset: Path, tmp_path: Path) -> None:
    recipe = load_recipe(TINY_RECIPE, {**SMALL, "num_epochs": 1, "ema": {"enabled": True}})
    trainer, _ = build_trainer(recipe, small_dataset, tmp_path / "run")
    assert trainer.recipe is recipe and trainer.ema is not None
    assert trainer.get_train_dataloader().batch_sampler is trainer.train_sampler  # one sampler, built once


def test_each_new_best_checkpoint_is_announced(run: Path) -> None:
    log = (run / "logs" / "training.log").read_text(encoding="utf-8")
    state = json.loads((complete_checkpoints(run / "checkpoints")[-1] / "trainer_state.json").read_text())
    assert f"Saved best model to: {state['best_model_checkpoint']}" in log


def test_average_is_the_mean_of_the_checkpoints_and_loads_in_the_pipeline(
    run: Path, small_dataset: Path, tmp_path: Path
) -> None:
    checkpoints = last_checkpoints(run, 2)
    out = average_checkpoints(checkpoints, tmp_path / "avg")
    averaged = load_file(out / "model.safetensors")
    parts = [load_file(p / "model.safetensors") for p in checkpoints]
    for name, tensor in averaged.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, (parts[0][name] + parts[1][name]) / 2)
    wav = _validation_wav(small_dataset)
    assert isinstance(pipeline("automatic-speech-recognition", model=str(out))(wav)["text"], str)
    with pytest.raises(ValueError, match="fewer than --last 9"):
        last_checkpoints(run, 9)


def test_average_command(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["average", "--run", str(run), "--last", "2", "--output", str(tmp_path / "avg")]) == 0
    assert (tmp_path / "avg" / "model.safetensors").is_file() and "Averaged 2 checkpoints" in capsys.readouterr().out
    checkpoints = [str(p) for p in complete_checkpoints(run / "checkpoints")]
    assert main(["average", "--checkpoints", *checkpoints, "--output", str(tmp_path / "all")]) == 0
    with pytest.raises(SystemExit):
        main(["average", "--help"])
    help_text = capsys.readouterr().out
    assert all(option in help_text for option in ("--checkpoints", "--run", "--last", "--output"))


# ---------------------------------------------------------------------------------------------------
# Rotation and resume resolution on checkpoint folders
# ---------------------------------------------------------------------------------------------------


def _checkpoint(root: Path, step: int, keep: bool = False, complete: bool = True) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text("{}")
        (path / "ai2text_state.json").write_text(json.dumps({"global_step": step, "keep": keep}))
    return path


def test_rotation_keeps_the_newest_the_best_and_the_save_every_ones(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40, 50):
        _checkpoint(tmp_path, step, keep=step == 20)
    deleted = rotate(tmp_path, limit=2, best=str(tmp_path / "checkpoint-30"))
    assert sorted(p.name for p in deleted) == ["checkpoint-10", "checkpoint-40"]
    assert [p.name for p in complete_checkpoints(tmp_path)] == ["checkpoint-20", "checkpoint-30", "checkpoint-50"]


def test_resume_latest_skips_unfinished_checkpoints(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 20, complete=False)  # killed mid-save by an older version: no trainer_state.json
    (tmp_path / STAGING / "checkpoint-30").mkdir(parents=True)
    assert resolve_resume("latest", tmp_path) == str(tmp_path / "checkpoint-10")
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_resume(str(tmp_path / "checkpoint-20"), tmp_path)
    with pytest.raises(ValueError, match="no complete checkpoint"):
        resolve_resume("latest", tmp_path / "empty")


def test_every_epoch_has_the_same_number_of_batches() -> None:
    """What lets the Trainer's step arithmetic find a resumed run's batch."""
    durations = np.random.default_rng(0).uniform(0.6, 9.0, size=500)
    sampler = DurationBatchSampler(durations, max_batch_seconds=30, seed=1)
    counts = set()
    for epoch in range(20):
        sampler.set_epoch(epoch)
        counts.add(len(sampler))
    assert len(counts) == 1
