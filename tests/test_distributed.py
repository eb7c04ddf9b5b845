"""Distributed training: the sampler builds the same global batches for any number of processes, so
2 processes × accumulation A train exactly like 1 process × accumulation 2A (CPU, gloo, torchrun)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, TINY_RECIPE
from safetensors.torch import load_file

from ai2text_hf.data.prepare import load_prepared
from ai2text_hf.data.sampler import DurationBatchSampler
from ai2text_hf.training.checkpoints import complete_checkpoints

DURATIONS = np.random.default_rng(0).uniform(0.6, 9.0, size=301).tolist()


@pytest.mark.parametrize("processes", [2, 3, 4])
def test_processes_share_one_global_batch_list(processes: int) -> None:
    single = DurationBatchSampler(DURATIONS, max_batch_seconds=30, seed=3)
    shards = [
        DurationBatchSampler(DURATIONS, max_batch_seconds=30, seed=3, num_replicas=processes, rank=rank)
        for rank in range(processes)
    ]
    for epoch in range(3):
        for sampler in (single, *shards):
            sampler.set_epoch(epoch)
        assert len({len(s) for s in shards}) == 1, "every process gets as many batches"
        assert all(s.global_batches() == single.global_batches() for s in shards)
        # Round r of the processes covers the same utterances as global batches [r*N, (r+1)*N) of one process,
        # except the last round, where halved batches even out the count.
        merged = [sorted(i for s in shards for i in list(s)[r]) for r in range(len(shards[0]))]
        flat = [i for batch in merged for i in batch]
        assert sorted(flat) == list(range(len(DURATIONS))), "each utterance exactly once per epoch"
        batches = single.global_batches()
        for r in range(len(single) // processes):
            assert merged[r] == sorted(i for batch in batches[r * processes : (r + 1) * processes] for i in batch)


def test_a_rank_outside_the_world_is_refused() -> None:
    with pytest.raises(ValueError, match="rank"):
        DurationBatchSampler(DURATIONS, max_batch_seconds=30, num_replicas=2, rank=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(
    dataset: Path, run_dir: Path, processes: int, accumulation: int, **extra: object
) -> subprocess.CompletedProcess:
    options = {
        "d_model": 32, "num_encoder_layers": 1, "num_heads": 2, "d_ff": 64, "learning_rate": 3e-3,
        "max_batch_seconds": 10, "num_epochs": 3, "logging_steps": 1, "disable_tqdm": True,
        "dropout": 0, "attention_dropout": 0, "spec_augment": False,  # nothing random in the forward pass
        "grad_accum_steps": accumulation, "eval_strategy": "'no'", "save_strategy": "epoch",
        "load_best_model_at_end": False, **extra,
    }  # fmt: skip
    train = [
        "scripts/train.py", "--recipe", str(TINY_RECIPE), "--dataset", str(dataset), "--output-dir", str(run_dir),
        *(f"--{key}={value}" for key, value in options.items()),
    ]  # fmt: skip
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--master_addr=127.0.0.1"]
        launcher += [f"--master_port={_free_port()}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(launcher + train, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def _losses(run_dir: Path) -> list[float]:
    state = json.loads((complete_checkpoints(run_dir / "checkpoints")[-1] / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.mark.slow
def test_two_processes_train_like_one_with_doubled_accumulation(small_dataset: Path, tmp_path: Path) -> None:
    durations = load_prepared(small_dataset)["train"]["duration"]
    assert len(DurationBatchSampler(durations, 10)) % 2 == 1, "an odd batch count also checks the halved last batch"
    one = tmp_path / "one"
    two = tmp_path / "two"
    _train(small_dataset, one, processes=1, accumulation=2)
    result = _train(small_dataset, two, processes=2, accumulation=1)
    assert result.stdout.count("Model: ") == 1, "only the main process reports"
    assert len(list((two / "logs").glob("events.out.tfevents.*"))) == 1, "only the main process writes TensorBoard"
    assert "x 2 processes x 1 accumulation" in (two / "logs" / "training.log").read_text(encoding="utf-8")
    expected, got = _losses(one), _losses(two)
    assert len(expected) == len(got) >= 10
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    reference = load_file(one / "model" / "model.safetensors")
    for name, tensor in load_file(two / "model" / "model.safetensors").items():
        torch.testing.assert_close(tensor, reference[name], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_two_processes_stop_together_at_the_wall_clock_budget(small_dataset: Path, tmp_path: Path) -> None:
    """Rank 0's clock decides: ranks that disagreed would hang in the next all-reduce (the timeout would fire)."""
    run = tmp_path / "budget"
    _train(small_dataset, run, processes=2, accumulation=1, num_epochs=500, max_train_minutes=0.1, warmup_steps=0)
    log = (run / "logs" / "training.log").read_text(encoding="utf-8")
    assert "Wall-clock budget of 0.1 min reached" in log
    state = json.loads((complete_checkpoints(run / "checkpoints")[-1] / "trainer_state.json").read_text())
    assert state["epoch"] < 500
    assert [e["learning_rate"] for e in state["log_history"] if "learning_rate" in e][-1] < 3e-4
