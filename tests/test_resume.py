"""Resume: a run killed with SIGKILL mid-epoch and resumed with ``--resume latest`` ends like an
uninterrupted run — same evaluations, same weights (deterministic CPU run, relative tolerance 1e-5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_RECIPE
from safetensors.torch import load_file
from test_checkpoints import SMALL

from ai2text_hf.data.prepare import load_prepared
from ai2text_hf.data.sampler import DurationBatchSampler
from ai2text_hf.training.checkpoints import STAGING, complete_checkpoints, read_state

EVERY = 2  # evaluate and save every 2 optimizer steps: several checkpoints inside each epoch
TOLERANCE = 1e-5


def _command(dataset: Path, run_dir: Path, *extra: str) -> list[str]:
    overrides = [f"--{key}={value}" for key, value in {**SMALL, "num_epochs": 2}.items()]
    steps = ["--eval_strategy=steps", f"--eval_steps={EVERY}", "--save_strategy=steps", f"--save_steps={EVERY}"]
    return [
        sys.executable, "-m", "ai2text_hf.cli", "train", "--recipe", str(TINY_RECIPE), "--dataset", str(dataset),
        "--output-dir", str(run_dir), *overrides, *steps, *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _evaluations(run_dir: Path) -> dict[int, dict]:
    state = json.loads((complete_checkpoints(run_dir / "checkpoints")[-1] / "trainer_state.json").read_text())
    return {e["step"]: e for e in state["log_history"] if "eval_loss" in e}


@pytest.mark.slow
def test_a_run_killed_mid_epoch_and_resumed_ends_like_an_uninterrupted_one(small_dataset: Path, tmp_path: Path):
    batches = len(DurationBatchSampler(load_prepared(small_dataset)["train"]["duration"], SMALL["max_batch_seconds"]))
    assert batches > EVERY + 1, "the first checkpoint must fall inside the first epoch"

    reference = tmp_path / "reference"
    subprocess.run(_command(small_dataset, reference), env=_env(), check=True, capture_output=True, cwd=REPO)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _command(small_dataset, killed), env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while not complete_checkpoints(killed / "checkpoints") and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model").exists(), "the run finished before it could be killed"
    resumed_from = complete_checkpoints(killed / "checkpoints")[-1]
    position = read_state(resumed_from)["sampler"]
    assert 0 < position["global_batches_done"] < position["global_batches"], f"not mid-epoch: {position}"

    leftover = killed / "checkpoints" / STAGING / "checkpoint-1000"  # as a kill during a save leaves it
    leftover.mkdir(parents=True, exist_ok=True)
    (leftover / "config.json").write_text("{}")

    result = subprocess.run(
        _command(small_dataset, killed, "--resume", "latest"), env=_env(), capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = (killed / "logs" / "training.log").read_text(encoding="utf-8")
    assert not leftover.exists()
    assert f"Resuming at epoch {position['epoch']}, batch {position['global_batches_done']} of" in log

    expected, got = _evaluations(reference), _evaluations(killed)
    assert expected.keys() == got.keys()
    for step, entry in expected.items():
        for key in ("eval_loss", "eval_cer", "eval_wer"):
            assert got[step][key] == pytest.approx(entry[key], rel=TOLERANCE), (step, key)
    last, last_reference = (complete_checkpoints(run / "checkpoints")[-1] for run in (killed, reference))
    assert last.name == last_reference.name
    for folder in ("model", f"checkpoints/{last.name}"):  # the best model, and the weights after the last step
        final = load_file(killed / folder / "model.safetensors")
        for name, tensor in load_file(reference / folder / "model.safetensors").items():
            torch.testing.assert_close(final[name], tensor, rtol=TOLERANCE, atol=1e-6)
