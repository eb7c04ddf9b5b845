"""Serving latency and throughput on loopback: `ai2text serve` in its own process under a bounded load.

The server gets --requests WAV uploads at concurrency 1 and at --concurrency (each load after a short
warm-up); the table reports p50/p95 latency, throughput and errors, which must be 0 (the script exits 1
otherwise). Baseline in the same run: the same uploads decoded and transcribed by an in-process
Transcriber one at a time, i.e. what a request costs without HTTP, the queue and batching.

    .venv/bin/python -m benchmarks.bench_serve [--model runs/demo/model] [--requests 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from ai2text_hf.data.audio import decode_audio
from ai2text_hf.inference import Transcriber

from .common import REPO, demo_waveforms, print_table

WARMUP_REQUESTS = 4


def _wav(wave: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(model: str, port: int, models_dir: str | None = None, *extra: str) -> subprocess.Popen:
    """``ai2text serve`` in its own process with ``extra`` options, once it answers /health."""
    command = [sys.executable, "-m", "ai2text_hf.cli", "serve", "--model", str(model), "--port", str(port)]
    command += ["--models-dir", models_dir] if models_dir else []
    process = subprocess.Popen([*command, *extra, "--log-level", "warning"], cwd=REPO)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the server did not answer /health within 180 s")


async def _load(url: str, payloads: list[bytes], concurrency: int) -> tuple[list[float], int, float]:
    """Latencies (s) of the successful requests, the error count and the wall time of the whole load."""
    latencies: list[float] = []
    errors = 0
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(data: bytes) -> None:
            nonlocal errors
            async with gate:
                start = time.perf_counter()
                try:
                    response = await client.post("/transcribe", files={"audio": ("u.wav", data, "audio/wav")})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        await asyncio.gather(*(one(p) for p in payloads[:WARMUP_REQUESTS]))
        latencies.clear()
        start = time.perf_counter()
        await asyncio.gather(*(one(p) for p in payloads))
        return latencies, errors, time.perf_counter() - start


def _row(setting: str, latencies: list[float], errors: int, wall: float, audio_seconds: float) -> tuple[str, ...]:
    p50, p95 = (np.percentile(latencies, q) * 1000 for q in (50, 95)) if latencies else (float("nan"),) * 2
    count = len(latencies) + errors
    return (setting, str(count), str(errors), f"{p50:.1f}", f"{p95:.1f}", f"{count / wall:.1f}",
            f"{audio_seconds / wall:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "runs" / "demo" / "model"), help="model folder to serve")
    parser.add_argument("--requests", type=int, default=200, help="requests per load")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight in the concurrent load")
    parser.add_argument("--utterances", type=int, default=40, help="distinct recordings, cycled over the requests")
    args = parser.parse_args()
    if not (Path(args.model) / "config.json").is_file():
        sys.exit(f"{args.model} is not a model folder: train one (make demo) or pass --model runs/<name>/model")

    waves = demo_waveforms(args.utterances)
    payloads = [_wav(waves[i % len(waves)]) for i in range(args.requests)]
    audio_seconds = sum(len(waves[i % len(waves)]) for i in range(args.requests)) / 16000

    transcriber = Transcriber(args.model)
    latencies = []
    for data in payloads[:WARMUP_REQUESTS] + payloads:
        start = time.perf_counter()
        transcriber.transcribe_arrays([decode_audio(data).wave])
        latencies.append(time.perf_counter() - start)
    latencies = latencies[WARMUP_REQUESTS:]
    rows = [_row("in-process Transcriber, 1 at a time", latencies, 0, sum(latencies), audio_seconds)]
    del transcriber

    port = _free_port()
    with tempfile.TemporaryDirectory() as empty_models_dir:
        server = _start_server(args.model, port, empty_models_dir)
        url = f"http://127.0.0.1:{port}"
        try:
            total_errors = 0
            for concurrency in dict.fromkeys((1, args.concurrency)):
                latencies, errors, wall = asyncio.run(_load(url, payloads, concurrency))
                total_errors += errors
                rows.append(_row(f"server, concurrency {concurrency}", latencies, errors, wall, audio_seconds))
            served = httpx.get(f"{url}/models").json()["models"][0]
        finally:
            server.terminate()
            server.wait(timeout=30)
    print_table(
        f"Serving on loopback: {args.requests} requests per load, {audio_seconds / args.requests:.1f} s of audio each "
        f"on average, model {args.model}",
        rows,
        ("setting", "requests", "errors", "p50 ms", "p95 ms", "requests/s", "audio s/s"),
    )
    print(f"\nThe server ran {served['requests']} requests in {served['batches']} model runs "
          f"(warm-ups included): {served['requests'] / served['batches']:.1f} requests per batch on average.")
    if total_errors:
        sys.exit(f"{total_errors} requests failed")


if __name__ == "__main__":
    main()
