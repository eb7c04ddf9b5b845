"""The run folder is the user's: a new run never silently replaces an earlier one, a refused resume writes
nothing, a full disk is named with what is intact, and model folders are readable by other users."""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_RECIPE
from test_checkpoints import SMALL

from ai2text_hf.training.checkpoints import STAGING, DiskFullError, complete_checkpoints
from ai2text_hf.training.preflight import PreflightError
from ai2text_hf.training.recipe import load_recipe
from ai2text_hf.training.trainer import train


def _train(dataset: Path, run_dir: Path, resume: str | None = None, overwrite: bool = False, **overrides: object):
    recipe = load_recipe(TINY_RECIPE, {**SMALL, "num_epochs": 1, **overrides})
    return train(recipe, dataset, run_dir, resume=resume, overwrite=overwrite)


@pytest.fixture(scope="module")
def trained_once(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # No step logs before the epoch's end: the summary must still show its train loss and learning rate.
    return _train(small_dataset, tmp_path_factory.mktemp("once") / "run", logging_steps=1000).run_dir


def test_a_finished_run_says_its_length_summarises_its_epoch_and_leaves_no_staging(trained_once: Path) -> None:
    log = (trained_once / "logs" / "training.log").read_text(encoding="utf-8")
    assert "Run length: 1 epoch (" in log
    summary = log[log.index("Summary:") :]
    assert re.search(r"Train Loss: \d+\.\d{3}\n", summary), summary
    assert re.search(r"Learning Rate: \d\.\d\de-\d\d\n", summary), summary
    assert not (trained_once / "checkpoints" / STAGING).exists()
    assert len(list((trained_once / "logs").glob("events.out.tfevents.*"))) == 1


@pytest.fixture
def finished_run(trained_once: Path, tmp_path: Path) -> Path:
    """A copy of one finished run per test (tests change it)."""
    return Path(shutil.copytree(trained_once, tmp_path / "run"))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_training_into_a_finished_run_is_refused_and_changes_nothing(small_dataset: Path, finished_run: Path) -> None:
    before = _files(finished_run / "model") | _files(finished_run / "checkpoints")
    refusal = r"already holds a run \(model/, checkpoints/\).*--resume latest.*--output-dir"
    with pytest.raises(PreflightError, match=refusal):
        _train(small_dataset, finished_run, learning_rate=1e-2)
    assert _files(finished_run / "model") | _files(finished_run / "checkpoints") == before


def test_overwrite_replaces_the_model_and_clears_the_old_checkpoints(small_dataset: Path, finished_run: Path) -> None:
    old = complete_checkpoints(finished_run / "checkpoints")
    (finished_run / "checkpoints" / "checkpoint-999").mkdir()  # an old run's checkpoint a resume could pick
    (finished_run / "checkpoints" / "checkpoint-999" / "trainer_state.json").write_text("{}")
    _train(small_dataset, finished_run, num_epochs=2, overwrite=True)
    new = complete_checkpoints(finished_run / "checkpoints")
    assert "checkpoint-999" not in {p.name for p in new} and new[-1].name != old[-1].name
    assert "num_epochs: 2" in (finished_run / "recipe.yaml").read_text(encoding="utf-8")


def test_a_refused_resume_leaves_the_runs_recipe_and_hyperparameters(small_dataset: Path, finished_run: Path) -> None:
    record = {name: (finished_run / name).read_bytes() for name in ("recipe.yaml", "hyperparameters.json")}
    with pytest.raises(ValueError, match="max_batch_seconds"):
        _train(small_dataset, finished_run, max_batch_seconds=7, resume="latest")
    assert {name: (finished_run / name).read_bytes() for name in record} == record


def test_a_full_disk_names_itself_and_the_intact_checkpoint_resumes(
    small_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The optimizer state of the second checkpoint meets a full disk, as torch.save would on a real one."""
    saves = {"count": 0}
    real_save = torch.save

    def save_until_full(obj, path, *args, **kwargs):
        if str(path).endswith("optimizer.pt"):
            saves["count"] += 1
            if saves["count"] == 2:
                Path(path).write_bytes(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    run = tmp_path / "run"
    with pytest.raises(DiskFullError, match=r"is full .* while writing checkpoint checkpoint-\d+\. The last complete "
                       r"checkpoint, .*checkpoint-\d+, is intact.*--resume latest") as failure:
        _train(small_dataset, run, num_epochs=2)
    assert failure.value.errno == errno.ENOSPC
    intact = complete_checkpoints(run / "checkpoints")
    assert len(intact) == 1 and not any((run / "checkpoints" / "_staging").glob("*"))
    monkeypatch.setattr(torch, "save", real_save)
    result = _train(small_dataset, run, num_epochs=2, resume="latest")
    assert (result.model_dir / "model.safetensors").is_file()


def test_model_and_checkpoint_weights_get_ordinary_file_modes(finished_run: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    weights = [finished_run / "model" / "model.safetensors", *finished_run.glob("checkpoints/*/model.safetensors")]
    assert len(weights) >= 2
    for path in weights:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
