"""Run every benchmark and write ``benchmarks/RESULTS.md``: machine, versions, command, tables.

Each benchmark runs in its own process (so one's threads, caches and peak memory don't leak into the
next) and prints its own markdown tables with the baseline measured in the same run; this script only
collects them. A benchmark that fails is recorded as failed and the others still run: benchmarks
report, they never gate.

    .venv/bin/python -m benchmarks.run_all [--model runs/demo/model] [--only features inference] [--full]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from .common import REPO

RESULTS = REPO / "benchmarks" / "RESULTS.md"
PACKAGES = ("torch", "torchaudio", "transformers", "datasets", "accelerate", "onnxruntime", "fastapi")


def benchmarks(model: str, dataset: str) -> dict[str, list[str]]:
    """name -> arguments of ``make bench``, in the order they run."""
    return {
        "prepare": [],  # also runs bench_features on the same audio
        "inference": ["--model", model],
        "long_audio": ["--model", model],
        "decode": ["--model", model, "--dataset", dataset],
        "export": ["--model", model, "--dataset", dataset],
        "serve": ["--model", model],
        "robustness": ["--model", model],
        "train": ["--dataset", dataset],
        "reliability_data": [],
        "reliability_server": ["--model", model],
        "stream_server": [],  # a model trained for streaming at runs/streaming/model, else a random one of its recipe
        "align": ["--model", model],
        "segment": ["--model", model],
        "clean": ["--model", model],
    }


def long_benchmarks(model: str) -> dict[str, list[str]]:
    """Run by ``--full`` or by name: the 18-minute CC0 training comparison, the adaptation curve on the
    real syllables of ../shared (about 45 minutes; ``make bench-real``) and the streaming model's chunked CER,
    RTF and latency (``make bench-streaming``, which trains ``runs/streaming`` first)."""
    return {
        "recipe_cc0": ["--minutes", "18", "--epochs", "5"],
        "adaptation": ["--model", model],
        "streaming": ["--model", str(REPO / "runs" / "streaming" / "model")],
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _vector_isa() -> str:
    """The widest vector instructions torch's CPU kernels use here (AVX-512 machines run ~2.5x faster)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def _memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return float("nan")


def _versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ", ".join([f"Python {platform.python_version()}", *found])


def run(name: str, args: list[str]) -> tuple[str, float, int, str]:
    """(command, seconds, exit code, output) of one benchmark in a fresh process."""
    command = [sys.executable, "-m", f"benchmarks.bench_{name}", *args]
    start = time.monotonic()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.monotonic() - start
    output = proc.stdout if proc.returncode == 0 else proc.stdout + "\n" + proc.stderr[-3000:]
    shown = " ".join(["python", "-m", f"benchmarks.bench_{name}", *args])
    return shown, seconds, proc.returncode, output.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/demo/model", help="trained model the inference benchmarks use")
    parser.add_argument("--dataset", default="data/processed/demo", help="prepared dataset (test split decoded)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks (e.g. features serve)")
    parser.add_argument("--full", action="store_true", help="also the long ones (CC0 training, adaptation)")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the results (markdown)")
    args = parser.parse_args()

    every = benchmarks(args.model, args.dataset) | long_benchmarks(args.model)
    selected = every if args.full else benchmarks(args.model, args.dataset)
    if args.only:
        unknown = set(args.only) - set(every)
        if unknown:
            parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {sorted(every)}")
        selected = {name: a for name, a in every.items() if name in args.only}

    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m benchmarks.run_all`) on {datetime.date.today().isoformat()}.",
        f"Machine: {_cpu_name()} ({_vector_isa()}), {os.cpu_count()} cores, {_memory_gb():.0f} GiB RAM,"
        " no GPU unless stated.",
        f"Versions: {_versions()}.",
        "Every ratio compares against a baseline measured in the same process, right before or after.",
        "",
    ]
    failed = []
    for name, bench_args in selected.items():
        print(f"== {name} ...", flush=True)
        command, seconds, code, output = run(name, bench_args)
        print(output, flush=True)
        status = f"{seconds:.0f} s" if code == 0 else f"FAILED (exit {code}) after {seconds:.0f} s"
        if code:
            failed.append(name)
        lines += [f"## {name}", "", f"`{command}` — {status}", "", output, ""]
    Path(args.output).write_text("\n".join(lines), encoding="utf-8")
    print(f"\nWrote {args.output}" + (f"; failed: {', '.join(failed)}" if failed else ""))


if __name__ == "__main__":
    main()
