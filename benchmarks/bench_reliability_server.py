"""Server reliability on loopback: `ai2text serve` (default limits, an API key) under decompression bombs and
a mixed load of good, bad, oversized and hostile requests; the server's peak RSS and every status code.

Cases (issue 24): the 386 KB FLAC that declares 8 channels at 384 kHz for 115 s (several at once), the
largest recording the limits accept (several at once), a 200 MiB JSON body, then --requests requests at
--concurrency cycling through good uploads, corrupt files, non-audio, oversized and overlong uploads, the
bomb, requests without the API key, huge JSON bodies, an infinite hotword weight, an unknown query
parameter and a foreign Host header. Each kind has one expected status; the script exits 1 on any 500,
any other unexpected status or a peak RSS of 2 GB or more. Baseline in the same run: the idle server's RSS;
with --unprotected also the peak RSS of decoding the bomb without the header checks (`decode_audio` in a
child process: what the server did before; about a minute and 3 GB on 2 cores). Peak RSS is the kernel's
high-water mark (Linux /proc/PID/status VmHWM), reset between phases, so no spike is missed between samples.

    .venv/bin/python -m benchmarks.bench_reliability_server [--model runs/demo/model] [--unprotected]

Without --model it serves the demo architecture with random weights, built on the spot (memory and the
checks do not depend on the weights).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from ai2text_hf.serving.guards import API_KEY_ENV

from .bench_serve import _free_port, _start_server, _wav
from .common import demo_waveforms, print_table

KEY = "bench-reliability-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
TARGET_PEAK_MB = 2048
PARALLEL_BOMBS = 4
PARALLEL_LARGEST = 2  # each is 120 s through the model: the phase's time grows with it


@dataclass(frozen=True)
class Case:
    """One kind of request: how to send it and the status the server must answer."""

    name: str
    expected: int
    method: str = "POST"
    path: str = "/transcribe"
    files: dict | None = None
    data: dict | None = None
    content: bytes | None = None
    headers: dict | None = None

    async def send(self, client: httpx.AsyncClient) -> int:
        headers = {**AUTH, **(self.headers or {})}
        headers = {k: v for k, v in headers.items() if v is not None}  # None drops the key
        response = await client.request(
            self.method, self.path, files=self.files, data=self.data, content=self.content, headers=headers
        )
        return response.status_code


def _flac(seconds: float, rate: int, channels: int) -> bytes:
    """Silence, written a second at a time (the bomb's 353 M samples never exist at once here)."""
    buffer = io.BytesIO()
    block = np.zeros((rate, channels), dtype=np.int16)
    with sf.SoundFile(buffer, "w", rate, channels, format="FLAC", subtype="PCM_16") as handle:
        for _ in range(int(seconds)):
            handle.write(block)
    return buffer.getvalue()


def _upload(name: str, data: bytes, content_type: str = "audio/wav") -> dict:
    return {"audio": (name, data, content_type)}


def _mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # "5" resets the VmHWM high-water mark


def _unprotected_decode_mb(bomb: Path) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of decoding ``bomb`` without the header checks, in a child process."""
    code = (
        "import resource, sys; from ai2text_hf.data.audio import decode_audio; "
        "decode_audio(open(sys.argv[1], 'rb').read()); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1]) / 1024, time.perf_counter() - start


async def _run(url: str, cases: list[Case], concurrency: int) -> tuple[list[tuple[Case, int]], float]:
    """(case, status) of each request (status 0: the connection failed) and the wall time."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def one(case: Case) -> tuple[Case, int]:
            async with gate:
                try:
                    return case, await case.send(client)
                except httpx.HTTPError:
                    return case, 0

        start = time.perf_counter()
        results = await asyncio.gather(*(one(case) for case in cases))
    return list(results), time.perf_counter() - start


def _random_model(folder: Path) -> Path:
    from ai2text_hf import AI2TextConfig, AI2TextFeatureExtractor, AI2TextForCTC, AI2TextProcessor, AI2TextTokenizer

    AI2TextForCTC(AI2TextConfig()).save_pretrained(str(folder))
    AI2TextProcessor(feature_extractor=AI2TextFeatureExtractor(), tokenizer=AI2TextTokenizer()).save_pretrained(
        str(folder)
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder to serve (default: the demo architecture, random weights)")
    parser.add_argument("--requests", type=int, default=300, help="requests in the mixed load")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight in the mixed load")
    parser.add_argument(
        "--unprotected", action="store_true", help="also measure decoding the bomb without the header checks"
    )
    args = parser.parse_args()
    if args.model and not (Path(args.model) / "config.json").is_file():
        sys.exit(f"{args.model} is not a model folder: train one (make demo) or leave --model out")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ai2text-reliability-") as tmp:
        tmp = Path(tmp)
        model = args.model or str(_random_model(tmp / "model"))
        bomb_path = tmp / "bomb.flac"
        bomb_path.write_bytes(_flac(115, 384_000, 8))
        bomb = bomb_path.read_bytes()
        largest = _flac(120, 48_000, 2)  # the largest recording the default limits accept: 44 MiB decoded
        unprotected = _unprotected_decode_mb(bomb_path) if args.unprotected else None

        good = [_wav(w) for w in demo_waveforms(20)]
        overlong = io.BytesIO()
        sf.write(overlong, np.zeros(130 * 8000, dtype=np.float32), 8000, format="WAV", subtype="PCM_U8")
        bomb_case = Case("bomb FLAC (8 ch, 384 kHz, 115 s)", 422, files=_upload("bomb.flac", bomb, "audio/flac"))
        kinds = [
            *(Case("good upload", 200, files=_upload("good.wav", g)) for g in good[:8]),
            Case("corrupt file", 422, files=_upload("corrupt.wav", os.urandom(8192))),
            Case("not audio (text/plain)", 415, files=_upload("notes.txt", b"xin chao", "text/plain")),
            Case("oversized upload (21 MiB)", 413, files=_upload("big.wav", bytes(21 * 2**20))),
            Case("overlong recording (130 s)", 413, files=_upload("long.wav", overlong.getvalue())),
            bomb_case,
            Case("no API key", 401, files=_upload("good.wav", good[0]), headers={"Authorization": None}),
            Case("wrong API key", 401, method="DELETE", path="/models/model", headers={"Authorization": "Bearer x"}),
            Case("huge JSON body (16 MiB)", 413, path="/models/load", content=b" " * (16 * 2**20),
                 headers={"content-type": "application/json"}),
            Case("hotword weight inf", 422, files=_upload("good.wav", good[1]), data={"hotwords": "xin chào\tinf"}),
            Case("unknown query parameter", 422, path="/transcribe?beam_width=-1", files=_upload("good.wav", good[2])),
            Case("foreign Host header", 400, method="GET", path="/models", headers={"Host": "rebind.example"}),
        ]
        mixed = [kinds[i % len(kinds)] for i in range(args.requests)]

        os.environ[API_KEY_ENV] = KEY  # the server reads it; the benchmark never passes it on a command line
        port = _free_port()
        server = _start_server(model, port, str(tmp / "no-models"))
        url = f"http://127.0.0.1:{port}"
        phases = []
        try:
            asyncio.run(_run(url, kinds[:4], 4))  # warm-up: the first model runs allocate their buffers
            idle_mb = _mb(server.pid, "VmRSS")
            for phase, cases, concurrency in [
                (f"{PARALLEL_BOMBS} bombs at once", [bomb_case] * PARALLEL_BOMBS, PARALLEL_BOMBS),
                (
                    f"{PARALLEL_LARGEST} largest accepted recordings at once (120 s, 48 kHz stereo)",
                    [Case("largest accepted recording", 200, files=_upload("max.flac", largest, "audio/flac"))]
                    * PARALLEL_LARGEST,
                    PARALLEL_LARGEST,
                ),
                (
                    "200 MiB JSON body to /models/load",
                    [Case("200 MiB JSON body", 413, path="/models/load", content=b" " * (200 * 2**20),
                          headers={"content-type": "application/json"})],
                    1,
                ),
                (f"mixed load, concurrency {args.concurrency}", mixed, args.concurrency),
            ]:
                _reset_peak(server.pid)
                results, wall = asyncio.run(_run(url, cases, concurrency))
                phases.append((phase, results, wall, _mb(server.pid, "VmHWM")))
            after_mb = _mb(server.pid, "VmRSS")
        finally:
            server.terminate()
            server.wait(timeout=30)

    rows, failures = [], 0
    for phase, results, wall, peak in phases:
        codes = Counter(status for _, status in results)
        unexpected = sum(status != case.expected for case, status in results)
        failures += unexpected + (peak >= TARGET_PEAK_MB)
        rows.append((phase, str(len(results)), ", ".join(f"{c}: {n}" for c, n in sorted(codes.items())),
                     str(codes.get(500, 0)), str(unexpected), f"{wall:.1f}", f"{peak:.0f}", f"{peak / idle_mb:.2f}"))
    print_table(
        f"Server RSS and status codes on loopback (default limits, API key; model {args.model or 'random demo'})",
        rows,
        ("phase", "requests", "status codes", "500s", "unexpected", "wall s", "peak RSS MB", "x idle RSS"),
    )
    print(f"\nIdle server RSS {idle_mb:.0f} MB (baseline), {after_mb:.0f} MB after every phase; target peak "
          f"< {TARGET_PEAK_MB} MB.")
    if unprotected:
        print(f"The bomb decoded without the header checks (the server before): peak RSS {unprotected[0]:.0f} MB "
              f"({unprotected[0] / idle_mb:.2f} x the idle server) in {unprotected[1]:.1f} s.")

    mixed_results = phases[-1][1]
    kind_rows = []
    for name in dict.fromkeys(case.name for case in kinds):
        statuses = Counter(status for case, status in mixed_results if case.name == name)
        expected = next(case.expected for case in kinds if case.name == name)
        kind_rows.append((name, str(sum(statuses.values())), str(expected),
                          ", ".join(f"{c}: {n}" for c, n in sorted(statuses.items()))))
    print_table(
        f"Mixed load by kind ({args.requests} requests, concurrency {args.concurrency})",
        kind_rows,
        ("kind", "requests", "expected", "status codes (0: connection failed)"),
    )
    print(f"\nTotal {time.perf_counter() - started:.0f} s.")
    if failures:
        sys.exit(f"{failures} unexpected answers or RSS over target")


if __name__ == "__main__":
    main()
