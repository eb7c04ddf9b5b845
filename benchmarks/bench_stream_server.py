"""Concurrent live streams on `ai2text serve`'s WebSocket /stream, each fed at real time, on loopback.

The server runs in its own process; every client sends 100 ms frames of 16-bit PCM on a real-time schedule
(speech-like test audio with pauses, looped) and reads the partials and finals. Reported per load: audio
dropped (sent minus what the server says it received; must be 0, the script exits 1 otherwise), the latency of
each message (from sending the last audio it covers, its ``end``, to receiving it: p50 and p95), how late the
client's sends fell behind the real-time schedule (backpressure when the server lags), and the server's RSS
growth from the first second of the load to its end (and from its first minute: what grows after that grows
with time). Baseline in the same run: one stream alone on the same server (the ratio is the p95 latency
against it).

    .venv/bin/python -m benchmarks.bench_stream_server [--model runs/<name>/model] [--streams 20] [--seconds 60]
    .venv/bin/python -m benchmarks.bench_stream_server --long    # 10 minutes: the issue's RSS target

Without --model (or without a model trained for streaming at the default path) it serves a randomly initialised
model of recipes/streaming-cpu.yaml: the same compute per chunk as the trained one, but text on every step (so
more messages than a trained model sends).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .bench_reliability_server import _mb
from .bench_serve import _free_port, _start_server
from .common import REPO, demo_waveforms, print_table

FRAME_SECONDS = 0.1
RATE = 16000
LONG_SECONDS = 600.0
# RSS growth is also given from this far into a load: every stream's state and the runtimes' buffers exist by then,
# so what grows after it would grow with time (a leak), not with the number of streams.
STEADY_SECONDS = 60.0
DEFAULT_MODEL = REPO / "runs" / "streaming" / "model"


@dataclass
class StreamResult:
    sent_seconds: float = 0.0
    received_seconds: float = 0.0  # the server's audio_seconds in its last message
    close_code: int | None = None
    latencies: list[float] = field(default_factory=list)
    max_send_lag: float = 0.0
    messages: int = 0


def _stream_audio(waves: list[np.ndarray], seconds: float, offset: int) -> bytes:
    """``seconds`` of the utterances with 0.5 s pauses between them, looped from utterance ``offset``."""
    pause = np.zeros(RATE // 2, dtype=np.float32)
    pieces, total, index = [], 0, offset
    while total < seconds * RATE:
        wave = waves[index % len(waves)]
        pieces += [wave, pause]
        total += len(wave) + len(pause)
        index += 1
    audio = np.concatenate(pieces)[: int(seconds * RATE)]
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def _one_stream(url: str, pcm: bytes) -> StreamResult:
    result = StreamResult()
    frame = int(FRAME_SECONDS * RATE) * 2
    sent_at: list[float] = []  # wall time when the audio up to (i + 1) frames had been sent
    async with connect(url, subprotocols=["ai2text.v1"], max_size=None, open_timeout=60) as websocket:

        async def read() -> None:
            try:
                async for message in websocket:
                    received = time.perf_counter()
                    event = json.loads(message)
                    if event["type"] not in ("partial", "final"):
                        continue
                    result.messages += 1
                    result.received_seconds = event["audio_seconds"]
                    frames_needed = max(1, int(np.ceil(round(event["end"] / FRAME_SECONDS, 6))))
                    if frames_needed <= len(sent_at):
                        result.latencies.append(received - sent_at[frames_needed - 1])
            except ConnectionClosed:
                pass

        await websocket.recv()  # ready
        reader = asyncio.create_task(read())
        start = time.perf_counter()
        for index in range(0, len(pcm), frame):
            due = start + len(sent_at) * FRAME_SECONDS
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            await websocket.send(pcm[index : index + frame])
            now = time.perf_counter()
            result.max_send_lag = max(result.max_send_lag, now - due)
            sent_at.append(now)
        result.sent_seconds = len(pcm) / 2 / RATE
        await websocket.send(json.dumps({"type": "end"}))
        await reader
    result.close_code = websocket.close_code
    return result


class RssSampler:
    """The server process's resident memory, sampled every half second from a thread."""

    def __init__(self, pid: int):
        self.pid = pid
        self.samples: list[tuple[float, float]] = []  # (time, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.samples.append((time.monotonic(), _mb(self.pid, "VmRSS")))

    def __enter__(self) -> RssSampler:
        self.samples.append((time.monotonic(), _mb(self.pid, "VmRSS")))
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic(), _mb(self.pid, "VmRSS")))

    def growth_mb(self, after_seconds: float = 1.0) -> float:
        """From the first sample ``after_seconds`` into the load (the streams' buffers exist) to the last."""
        start = self.samples[0][0] + after_seconds
        first = next((rss for t, rss in self.samples if t >= start), self.samples[-1][1])
        return self.samples[-1][1] - first


async def _load(url: str, pcms: list[bytes]) -> list[StreamResult]:
    return await asyncio.gather(*(_one_stream(url, pcm) for pcm in pcms))


def _random_streaming_model(folder: Path) -> Path:
    """A randomly initialised model with recipes/streaming-cpu.yaml's architecture and features."""
    from ai2text_hf import AI2TextForCTC, AI2TextProcessor, AI2TextTokenizer
    from ai2text_hf.training.initial_model import recipe_feature_extractor
    from ai2text_hf.training.recipe import load_recipe

    recipe = load_recipe(REPO / "recipes" / "streaming-cpu.yaml")
    tokenizer = AI2TextTokenizer()
    model = AI2TextForCTC(recipe.model_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(folder)
    AI2TextProcessor(feature_extractor=recipe_feature_extractor(recipe), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _row(setting: str, results: list[StreamResult], rss: RssSampler, baseline_p95: float | None) -> tuple[str, ...]:
    latencies = [latency for r in results for latency in r.latencies]
    p50, p95 = (np.percentile(latencies, q) * 1000 for q in (50, 95)) if latencies else (float("nan"),) * 2
    dropped = sum(max(0.0, r.sent_seconds - r.received_seconds) for r in results)
    ratio = f"{p95 / baseline_p95:.2f}x" if baseline_p95 else "1.00x (baseline)"
    return (
        setting,
        f"{sum(r.sent_seconds for r in results):.0f}",
        f"{dropped:.2f}",
        str(sum(r.messages for r in results)),
        f"{p50:.0f}",
        f"{p95:.0f}",
        ratio,
        f"{max(r.max_send_lag for r in results) * 1000:.0f}",
        f"{rss.growth_mb():+.1f}",
        f"{rss.growth_mb(STEADY_SECONDS):+.1f}" if rss.samples[-1][0] - rss.samples[0][0] > 2 * STEADY_SECONDS else "",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        help=f"a model folder trained for streaming (default {DEFAULT_MODEL} if present, "
        "else a random model of recipes/streaming-cpu.yaml)",
    )
    parser.add_argument("--streams", type=int, default=20, help="concurrent streams of the main load (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per stream, seconds (default 60)")
    parser.add_argument("--long", action="store_true", help=f"{LONG_SECONDS:g} s per stream (the RSS target's run)")
    parser.add_argument(
        "--baseline-seconds", type=float, default=60.0, help="audio of the one-stream baseline, at most --seconds"
    )
    parser.add_argument("--workers", type=int, default=2, help="the server's --stream-workers (default 2)")
    parser.add_argument("--utterances", type=int, default=20, help="distinct recordings, looped in each stream")
    args = parser.parse_args()
    seconds = LONG_SECONDS if args.long else args.seconds

    waves = demo_waveforms(args.utterances)
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(args.model) if args.model else DEFAULT_MODEL
        if not args.model and not (model / "config.json").is_file():
            model = _random_streaming_model(Path(scratch) / "random-streaming" / "model")
        port = _free_port()
        server = _start_server(
            str(model), port, None, "--max-streams", str(args.streams + 1), "--stream-workers", str(args.workers)
        )
        url = f"ws://127.0.0.1:{port}/stream"
        try:
            asyncio.run(_load(url, [_stream_audio(waves, 3.0, 0)]))  # warm-up: the recogniser loads on first use
            rows, failures = [], 0
            baseline_p95 = None
            for count in dict.fromkeys((1, args.streams)):
                length = min(seconds, args.baseline_seconds) if count == 1 < args.streams else seconds
                pcms = [_stream_audio(waves, length, offset) for offset in range(count)]
                with RssSampler(server.pid) as rss:
                    results = asyncio.run(_load(url, pcms))
                row = _row(f"{count} stream{'s' * (count > 1)}", results, rss, baseline_p95)
                rows.append(row)
                baseline_p95 = baseline_p95 or float(row[5])
                failures += sum(r.close_code != 1000 or r.received_seconds < r.sent_seconds for r in results)
        finally:
            server.terminate()
            server.wait(timeout=30)
    trained = args.model or model == DEFAULT_MODEL
    print_table(
        f"Live streams on loopback: {seconds:g} s of audio per stream (the one-stream baseline "
        f"{min(seconds, args.baseline_seconds):g} s) at real time in {FRAME_SECONDS * 1000:.0f} ms "
        f"frames, server --stream-workers {args.workers}, model "
        f"{model if trained else 'random weights, recipes/streaming-cpu.yaml architecture'}",
        rows,
        (
            "load",
            "audio s",
            "dropped s",
            "messages",
            "p50 ms",
            "p95 ms",
            "p95 vs 1 stream",
            "max send lag ms",
            "server RSS growth MB",
            f"growth after the first {STEADY_SECONDS:g} s MB",
        ),
    )
    if failures:
        sys.exit(f"{failures} streams dropped audio or did not close normally")


if __name__ == "__main__":
    main()
