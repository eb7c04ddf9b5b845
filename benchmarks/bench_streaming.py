"""Streaming recognition: accuracy at chunk sizes, compute per second of audio, cost over a long stream, latency.

The model is one trained for streaming (``recipes/streaming-cpu.yaml``); the data the demo's test split. Baselines,
measured in the same run: the same model at full context (CER) and transcribing the same audio offline (RTF).

* CER, greedy: full context vs 640 ms and 320 ms chunks (``attention_left_chunks`` of left context). The chunked
  numbers come from the full forward pass with the chunk mask, which tests/test_streaming.py pins equal to the
  streaming steps with caches.
* Streaming compute RTF at 640 ms on ``--threads`` threads: the test utterances joined into one stream, fed in
  100 ms blocks as fast as possible, features included; against the offline forward pass over each utterance.
* A ``--long-minutes`` stream: the RTF of its first and of its last minute (the cost must not grow).
* The same stream with the encoder step exported to ONNX (float and int8) run by onnxruntime.
* Partial latency per word: a word's end in the audio comes from forced alignment of the reference
  (``--align-model``, default the model itself, full context); its latency is the audio time fed when the first
  event holding that many words came out, plus that step's compute time, minus the word's end. Median and 95th
  percentile.

    .venv/bin/python -m benchmarks.bench_streaming --model runs/streaming/model --dataset data/processed/demo
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ai2text_hf.data.versions import load_prepared
from ai2text_hf.export.streaming import export_streaming_onnx
from ai2text_hf.metrics import error_rates
from ai2text_hf.streaming import StreamingOptions, StreamingRecognizer

from .common import print_table

BLOCK = 1600  # 100 ms of 16 kHz audio per accept_audio call, as a microphone delivers it


def greedy_texts(recognizer: StreamingRecognizer, waves: list[np.ndarray], chunk_frames: int) -> list[str]:
    """Greedy transcripts of each utterance alone, at full context (``chunk_frames`` 0) or in chunks."""
    model, extractor, tokenizer = recognizer.model, recognizer.feature_extractor, recognizer.tokenizer
    texts = []
    with torch.inference_mode():
        for wave in waves:
            features = extractor(wave, sampling_rate=16000, return_tensors="pt")["input_features"]
            logits = model(features, chunk_size=chunk_frames, left_chunks=recognizer.left_chunks).logits[0]
            texts.append(tokenizer.decode(logits.argmax(-1).tolist()))
    return texts


def stream_through(
    recognizer: StreamingRecognizer, audio: np.ndarray
) -> tuple[list[tuple[float, float, object]], np.ndarray]:
    """Feed ``audio`` block by block: ``(audio seconds fed, step wall seconds, event)`` per event, and the (wall,
    CPU) seconds of each block; CPU time is what a shared, busy machine distorts least."""
    session = recognizer.session()
    events, costs = [], []
    for start in range(0, len(audio), BLOCK):
        tick, cpu = time.perf_counter(), time.process_time()
        out = session.accept_audio(audio[start : start + BLOCK])
        if start + BLOCK >= len(audio):
            out += session.finish()
        costs.append((time.perf_counter() - tick, time.process_time() - cpu))
        fed = min(len(audio), start + BLOCK) / 16000
        events += [(fed, costs[-1][0], event) for event in out]
    return events, np.asarray(costs)


def offline_seconds(recognizer: StreamingRecognizer, waves: list[np.ndarray]) -> np.ndarray:
    """(wall, CPU) seconds of the features and full-context forward pass over each utterance (the RTF baseline)."""
    tick, cpu = time.perf_counter(), time.process_time()
    greedy_texts(recognizer, waves, 0)
    return np.asarray([time.perf_counter() - tick, time.process_time() - cpu])


def word_ends(args: argparse.Namespace, waves: list[np.ndarray], texts: list[str]) -> list[list[float]]:
    """Each reference word's end (seconds) by forced alignment; None for a word left unaligned."""
    from ai2text_hf.corpus.align import Aligner, AlignItem
    from ai2text_hf.inference import Transcriber

    aligner = Aligner(Transcriber(args.align_model or args.model, device="cpu"))
    items = [AlignItem(str(i), text, waveform=wave) for i, (wave, text) in enumerate(zip(waves, texts))]
    return [[w.end for w in alignment.words] for alignment in aligner.align(items)]


def latencies(recognizer: StreamingRecognizer, waves: list[np.ndarray], ends: list[list[float]]) -> list[float]:
    result = []
    for wave, word_end in zip(waves, ends):
        events, _ = stream_through(recognizer, wave)
        shown_words, finished = [], 0  # words shown by each event, counting those of earlier finals
        for fed, cost, event in events:
            shown_words.append((fed + cost, finished + len(event.words)))
            finished += len(event.words) if event.type == "final" else 0
        for index, end in enumerate(word_end):
            shown = next((at for at, count in shown_words if count > index), None)
            if end is not None and shown is not None:
                result.append(shown - end)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/streaming/model")
    parser.add_argument("--dataset", default="data/processed/demo")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="First N test utterances (default all).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--latency-utterances", type=int, default=50)
    parser.add_argument("--align-model", default=None, help="Model folder for the forced alignment (default --model).")
    parser.add_argument("--skip-cer", action="store_true", help="Leave out the CER table.")
    parser.add_argument("--skip-latency", action="store_true", help="Leave out the latency table.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = load_prepared(args.dataset)[args.split]
    if args.limit:
        rows = rows.select(range(min(args.limit, len(rows))))
    waves = [np.asarray(row["audio"], dtype=np.float32) for row in rows]
    references = list(rows["text"])
    seconds = sum(len(w) for w in waves) / 16000

    recognizer = StreamingRecognizer(args.model, StreamingOptions(chunk_ms=640))
    if not args.skip_cer:
        cer_table(args, recognizer, waves, references, seconds)
    run_rtf_and_latency(args, recognizer, waves, references, seconds)


def cer_table(
    args: argparse.Namespace,
    recognizer: StreamingRecognizer,
    waves: list[np.ndarray],
    references: list[str],
    seconds: float,
) -> None:
    load = os.getloadavg()[0]
    full = error_rates(references, greedy_texts(recognizer, waves, 0))["cer"]
    cer_rows = [("full context (baseline)", f"{100 * full:.2f}", "1.00")]
    for chunk_ms in (640, 320):
        chunked = StreamingRecognizer(recognizer.folder, StreamingOptions(chunk_ms=chunk_ms))
        cer = error_rates(references, greedy_texts(chunked, waves, chunked.chunk_frames))["cer"]
        left = chunked.left_chunks * chunk_ms / 1000
        cer_rows.append((f"{chunk_ms} ms chunks, {left:.2f} s left", f"{100 * cer:.2f}", f"{cer / full:.2f}"))
    print_table(
        f"CER, greedy, {len(waves)} {args.split} utterances ({seconds / 60:.1f} min), load average {load:.1f}",
        cer_rows,
        ("decoding", "CER %", "x full context"),
    )


def run_rtf_and_latency(
    args: argparse.Namespace,
    recognizer: StreamingRecognizer,
    waves: list[np.ndarray],
    references: list[str],
    seconds: float,
) -> None:
    joined = np.concatenate(waves)
    offline = offline_seconds(recognizer, waves) / seconds
    _, costs = stream_through(recognizer, joined)
    streaming = costs.sum(0) / seconds
    repeats = int(np.ceil(args.long_minutes * 60 / seconds))
    long_audio = np.tile(joined, repeats)[: int(args.long_minutes * 60 * 16000)]
    _, long_costs = stream_through(recognizer, long_audio)
    per_minute = 60 * 16000 // BLOCK
    first, last = long_costs[:per_minute].sum(0) / 60, long_costs[-per_minute:].sum(0) / 60

    def rtf_row(name: str, rtf: np.ndarray) -> tuple[str, ...]:
        return (name, f"{rtf[0]:.4f}", f"{rtf[1]:.4f}", f"{rtf[1] / offline[1]:.2f}")

    onnx_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for quantize in (False, True):
            path = export_streaming_onnx(recognizer.model, Path(tmp) / f"step-{quantize}.onnx", 16, 8, quantize)
            options = StreamingOptions(chunk_ms=640, left_chunks=8, onnx_step=str(path))
            _, onnx_costs = stream_through(StreamingRecognizer(recognizer.folder, options), joined)
            name = f"streaming, ONNX step ({'int8' if quantize else 'float'}), the same stream"
            onnx_rows.append(rtf_row(name, onnx_costs.sum(0) / seconds))

    print_table(
        f"Compute RTF, 640 ms chunks, {args.threads} thread(s), features included, load average "
        f"{os.getloadavg()[0]:.1f}",
        [
            rtf_row("offline, full context, per utterance (baseline)", offline),
            rtf_row(f"streaming, {seconds / 60:.1f} min stream in 100 ms blocks", streaming),
            rtf_row(f"streaming, first minute of {args.long_minutes:g} min", first),
            rtf_row(f"streaming, last minute of {args.long_minutes:g} min", last),
            *onnx_rows,
        ],
        ("run", "RTF (wall)", "RTF (CPU time)", "x offline (CPU)"),
    )
    if args.skip_latency:
        return

    subset = slice(0, args.latency_utterances)
    ends = word_ends(args, waves[subset], references[subset])
    delays = latencies(recognizer, waves[subset], ends)
    words = sum(len(e) for e in ends)
    print_table(
        f"Partial latency per word, 640 ms chunks ({len(delays)} of {words} words in {len(ends)} utterances), "
        f"load average {os.getloadavg()[0]:.1f}",
        [
            ("median", f"{1000 * np.median(delays):.0f}"),
            ("95th percentile", f"{1000 * np.percentile(delays, 95):.0f}"),
            ("target: chunk + 150 ms", "790"),
        ],
        ("statistic", "ms after the word ends"),
    )


if __name__ == "__main__":
    main()
