"""Preflight: each problem the guide's checklist names stops the run before its first step, with the fix."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
from conftest import TINY_RECIPE, TrainedModel

from ai2text_hf.data.sampler import DurationBatchSampler
from ai2text_hf.training import preflight
from ai2text_hf.training.preflight import (
    PreflightError,
    check_dataset,
    check_disk,
    check_output_dir,
    checkpoint_bytes,
    report_batch,
    required_disk_bytes,
)
from ai2text_hf.training.recipe import load_recipe
from ai2text_hf.training.trainer import train

PARAMS = 5_000_000


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process may not write into: read-only permissions, or sysfs when running as root."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    if not Path("/sys/kernel").is_dir():
        pytest.skip("running as root without sysfs: no folder here refuses writes")
    return Path("/sys/kernel")


def test_unwritable_output_folder_stops_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match=r"is not writable.*pass an --output-dir you can write to"):
        check_output_dir(_unwritable_folder(tmp_path) / "runs" / "x")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PreflightError, match=r"is a file\. Use another --output-dir"):
        check_output_dir(blocker / "run")
    check_output_dir(tmp_path / "new" / "run")  # a folder that does not exist yet is fine
    assert not (tmp_path / "new").exists(), "the check leaves nothing behind"


def test_missing_dataset_stops_with_the_prepare_command(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match=r"does not exist: pass --dataset.*ai2text prepare --csv"):
        check_dataset(tmp_path / "nope")
    with pytest.raises(PreflightError, match="does not exist"):
        check_dataset(tmp_path / "metadata.csv")
    (tmp_path / "metadata.csv").write_text("file_path,transcript\n")
    check_dataset(tmp_path / "metadata.csv")  # a CSV to stream is a dataset too


def test_dataset_version_device_and_batch_are_printed_before_training(trained_model: TrainedModel) -> None:
    manifest = json.loads((trained_model.dataset_dir / "manifest.json").read_text(encoding="utf-8"))
    log = (trained_model.run_dir / "logs" / "training.log").read_text(encoding="utf-8")
    assert f"version {manifest['fingerprint'][:12]}" in log
    assert "Preflight: device CPU, mixed precision off (float32)." in log
    assert "Preflight: effective batch up to 60 s of audio per optimizer step" in log
    assert log.index("Preflight: effective batch") < log.index("Summary:")


def test_too_little_disk_for_the_checkpoints_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = load_recipe(TINY_RECIPE, {"save_total_limit": 3})
    needed = required_disk_bytes(recipe, PARAMS)
    # 3 rotated + 1 being written, each weights + 2 AdamW states, plus the exported model, with 10 % margin.
    assert needed == int(1.1 * (4 * checkpoint_bytes(PARAMS) + 4 * PARAMS))
    assert checkpoint_bytes(PARAMS) == PARAMS * 4 * 3
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage._replace(free=needed - 1))
    with pytest.raises(PreflightError, match=r"Not enough free disk.*lower --save_total_limit"):
        check_disk(recipe, tmp_path / "run", PARAMS)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda path: usage._replace(free=needed))
    check_disk(recipe, tmp_path / "run", PARAMS)


def test_ema_and_periodic_saves_need_more_disk() -> None:
    base = required_disk_bytes(load_recipe(TINY_RECIPE), PARAMS)
    assert required_disk_bytes(load_recipe(TINY_RECIPE, {"ema.enabled": True}), PARAMS) > base
    assert required_disk_bytes(load_recipe(TINY_RECIPE, {"save_every": 2, "num_epochs": 10}), PARAMS) > base


def test_effective_batch_counts_processes_and_accumulation(caplog: pytest.LogCaptureFixture) -> None:
    recipe = load_recipe(TINY_RECIPE, {"max_batch_seconds": 30, "grad_accum_steps": 4})
    sampler = DurationBatchSampler([2.0, 3.0, 4.0] * 20, max_batch_seconds=30)
    with caplog.at_level(logging.INFO, logger="ai2text_hf"):
        assert report_batch(recipe, sampler, num_processes=2) == 240
    assert "up to 240 s of audio per optimizer step (30 s per batch x 2 processes x 4 accumulation)" in caplog.text


def test_training_on_a_missing_dataset_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match="does not exist"):
        train(load_recipe(TINY_RECIPE), dataset_dir=tmp_path / "missing", output_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
