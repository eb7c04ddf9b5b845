"""Shared helpers: test audio, timing, and the results table format."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def machine_line() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def demo_waveforms(count: int, seed: int = 0) -> list[np.ndarray]:
    """Real speech-like test audio: espeak-ng renderings of package sentences when available, else
    seeded noise bursts of 1.5-6 s (the timing of feature extraction and of the model does not
    depend on the content)."""
    corpus = REPO / "data" / "demo" / "wavs" / "test"
    files = sorted(corpus.glob("*.wav"))[:count] if corpus.is_dir() else []
    if len(files) == count:
        from ai2text_hf.data.audio import load_audio

        return [load_audio(f)[0] for f in files]
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(16000 * rng.uniform(1.5, 6.0)))).astype(np.float32) for _ in range(count)]


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Best wall time of ``repeats`` runs after one warm-up (the least disturbed by other load)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    print(f"\n## {title}\n{machine_line()}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def matmul_gflops(threads: int, size: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of ``threads`` threads on a large square ``dtype`` matrix product: what the cores can reach."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    seconds = best_time(lambda: [a @ b for _ in range(repeats)], repeats=3)
    torch.set_num_threads(previous)
    return 2 * size**3 * repeats / seconds / 1e9


def forward_flops(run: Callable[[], torch.Tensor], config) -> float:
    """Floating-point operations of ``run()``, a forward pass returning (batch, frames, vocab) logits.

    torch's FLOP counter sees the matrix products and convolutions; the attention products (scores and
    weighted values, 4 x frames² x d_model per layer and utterance) are added by hand: the counter does
    not see the CPU SDPA kernel.
    """
    with FlopCounterMode(display=False) as counter:
        logits = run()
    batch, frames, _ = logits.shape
    return counter.get_total_flops() + batch * 4 * frames**2 * config.d_model * config.num_encoder_layers
