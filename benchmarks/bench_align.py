"""Forced alignment (``ai2text align``): word boundaries, speed and memory on a long joined recording.

The demo test utterances are joined with 0.5 s of silence and aligned to their joined transcript. For each
utterance, the start of its first word and the end of its last word are compared with its speech onset and
offset (an energy threshold on the original utterance, placed in the joined file). The baseline is the
word timestamps of plain transcription (``Transcriber``, greedy), measured on the same file in the same run.
Peak memory for an hour is measured in a fresh process on the recording repeated to 60 minutes.

    .venv/bin/python -m benchmarks.bench_align --model runs/demo/model [--minutes 60]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from .common import REPO, print_table

SR = 16000
GAP_SECONDS = 0.5


def speech_bounds(wave: np.ndarray) -> tuple[float, float]:
    """First and last 10 ms frame of the utterance louder than both 35 dB below its loudest frame and 15 dB
    above its noise floor (10th percentile: some demo voices carry background noise), in seconds."""
    hop = SR // 100
    frames = wave[: len(wave) // hop * hop].reshape(-1, hop).astype(np.float64)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.flatnonzero(level > max(level.max() - 35.0, np.percentile(level, 10) + 15.0))
    return loud[0] * hop / SR, (loud[-1] + 1) * hop / SR


def joined_recording(
    corpus: Path, count: int | None, minutes: float | None = None
) -> tuple[np.ndarray, list[str], list[tuple[float, float]], list[Path]]:
    """The joined waveform, the transcripts, each utterance's speech (onset, offset) in it and its file. With
    ``minutes``, the utterances start again from the first until the recording is that long."""
    from ai2text_hf.data.audio import load_audio

    with (corpus / "metadata.csv").open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"][:count]
    if not rows:
        raise SystemExit(f"{corpus}/metadata.csv has no test rows: run `make demo` (or ai2text synth) first")
    gap = np.zeros(int(GAP_SECONDS * SR), dtype=np.float32)
    pieces, bounds, used, offset = [gap], [], [], GAP_SECONDS
    clips: dict[str, np.ndarray] = {}
    while not used or (minutes and offset < minutes * 60):
        for row in rows:
            if used and minutes and offset >= minutes * 60:
                break
            clip = clips.setdefault(row["file_path"], load_audio(corpus / row["file_path"], SR)[0])
            onset, offset_in_clip = speech_bounds(clip)
            bounds.append((offset + onset, offset + offset_in_clip))
            pieces += [clip, gap]
            used.append(row)
            offset += len(clip) / SR + GAP_SECONDS
    return (
        np.concatenate(pieces),
        [row["transcript"] for row in used],
        bounds,
        [corpus / row["file_path"] for row in used],
    )


def boundary_errors(words: list[tuple[float | None, float | None]], transcripts, bounds) -> np.ndarray:
    """|error| in ms of each utterance's first-word start and last-word end (written words, in order)."""
    errors, index = [], 0
    for transcript, (onset, offset) in zip(transcripts, bounds):
        count = len(transcript.split())
        first, last = words[index], words[index + count - 1]
        index += count
        if first[0] is not None:
            errors.append(abs(first[0] - onset))
        if last[1] is not None:
            errors.append(abs(last[1] - offset))
    return 1000 * np.asarray(errors)


def child(model: str, wav: str, truth_file: str) -> dict:
    """Align ``wav`` in a fresh process: wall and CPU time of the call, this process's peak RSS, and the
    boundary errors against ``truth_file`` (JSON: the transcripts and their speech bounds in ``wav``)."""
    import torch

    from ai2text_hf.corpus.align import Aligner, AlignItem
    from ai2text_hf.inference import Transcriber

    torch.set_num_threads(2)
    truth = json.loads(Path(truth_file).read_text(encoding="utf-8"))
    aligner = Aligner(Transcriber(model, device="cpu"))
    start, cpu = time.perf_counter(), time.process_time()
    (result,) = aligner.align([AlignItem("hour", " ".join(truth["transcripts"]), path=Path(wav))])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    errors = boundary_errors([(w.start, w.end) for w in result.words], truth["transcripts"], truth["bounds"])
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "load": os.getloadavg()[0],
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "duration": result.duration,
        "words": len(result.words),
        "aligned_words": sum(w.aligned for w in result.words),
        "unaligned_words": sum(u.last - u.first + 1 for u in result.unaligned),
        "median_ms": float(np.median(errors)),
        "p95_ms": float(np.percentile(errors, 95)),
        "boundaries": len(errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/demo/model")
    parser.add_argument("--corpus", default=str(REPO / "data" / "demo"))
    parser.add_argument("--utterances", type=int, default=None, help="first N test utterances (default: all)")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the memory run (0 to skip)")
    parser.add_argument("--child", nargs=2, metavar=("WAV", "TRUTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, *args.child)))
        return

    import torch

    from ai2text_hf.corpus.align import Aligner
    from ai2text_hf.decoding import DecodingOptions
    from ai2text_hf.inference import Transcriber

    torch.set_num_threads(2)
    wave, transcripts, bounds, _ = joined_recording(Path(args.corpus), args.utterances)
    duration = len(wave) / SR
    # Greedy: the model's own word times and text (a folder's LM would make the baseline a different decoder).
    transcriber = Transcriber(args.model, device="cpu", decoding=DecodingOptions.create())
    aligner = Aligner(transcriber)
    aligner.emissions([wave[: 10 * SR]])  # warm-up
    start, cpu = time.perf_counter(), time.process_time()
    (emission,) = aligner.emissions([wave])
    emission_seconds = time.perf_counter() - start
    result = aligner.snap(aligner.align_emission(emission, " ".join(transcripts), "joined", duration), wave)
    align_seconds, align_cpu = time.perf_counter() - start, time.process_time() - cpu
    ours = boundary_errors([(w.start, w.end) for w in result.words], transcripts, bounds)

    start, cpu = time.perf_counter(), time.process_time()
    (decoded,) = transcriber.transcribe_arrays([wave])
    transcribe_seconds, transcribe_cpu = time.perf_counter() - start, time.process_time() - cpu
    # The baseline's words are its own hypothesis: match them to utterances by time, not by count.
    hyp = decoded.words
    baseline = []
    for onset, offset in bounds:
        inside = [w for w in hyp if onset - GAP_SECONDS / 2 <= (w["start"] + w["end"]) / 2 <= offset + GAP_SECONDS / 2]
        if inside:
            baseline += [abs(inside[0]["start"] - onset), abs(inside[-1]["end"] - offset)]
    baseline_ms = 1000 * np.asarray(baseline)

    def row(name: str, errors: np.ndarray, seconds: float, cpu_seconds: float) -> tuple[str, ...]:
        return (
            name,
            f"{np.median(errors):.0f}",
            f"{np.percentile(errors, 95):.0f}",
            f"{len(errors)}",
            f"{duration / seconds:.0f}x",
            f"{duration / cpu_seconds:.0f}x",
        )

    print_table(
        f"Alignment: {len(transcripts)} demo test utterances joined by {GAP_SECONDS} s of silence "
        f"({duration / 60:.1f} min), boundaries vs energy onsets/offsets",
        [
            row("forced alignment (ai2text align)", ours, align_seconds, align_cpu),
            row("baseline: greedy transcription word times", baseline_ms, transcribe_seconds, transcribe_cpu),
            (
                "ratio (ours / baseline)",
                f"{np.median(ours) / np.median(baseline_ms):.2f}",
                f"{np.percentile(ours, 95) / np.percentile(baseline_ms, 95):.2f}",
                "",
                f"{transcribe_seconds / align_seconds:.2f}",
                f"{transcribe_cpu / align_cpu:.2f}",
            ),
        ],
        (
            "method",
            "median abs error (ms)",
            "p95 abs error (ms)",
            "boundaries",
            "speed (x real time, wall)",
            "audio s per CPU s",
        ),
    )
    starts = 1000 * np.asarray(
        [result.words[sum(len(t.split()) for t in transcripts[:i])].start - b[0] for i, b in enumerate(bounds)]
    )
    print(
        f"\nOf the {align_seconds:.1f} s, the model's logits took {emission_seconds:.1f} s. Signed start error "
        f"median {np.median(starts):+.0f} ms. Load average while it ran: {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores (wall-clock speed is only comparable on an idle machine). Words reported unaligned: "
        f"{sum(u.last - u.first + 1 for u in result.unaligned)} of {len(result.words)}; targets: median <= 40 ms, "
        "p95 <= 120 ms, >= 100x real time."
    )

    if args.minutes:
        with tempfile.TemporaryDirectory() as folder:
            repeats = int(np.ceil(args.minutes * 60 / duration))
            wav, truth = Path(folder) / "long.wav", Path(folder) / "long.json"
            sf.write(wav, np.concatenate([wave] * repeats), SR, subtype="PCM_16")
            shifted = [(s + r * duration, e + r * duration) for r in range(repeats) for s, e in bounds]
            truth.write_text(json.dumps({"transcripts": transcripts * repeats, "bounds": shifted}), encoding="utf-8")
            command = [sys.executable, "-m", "benchmarks.bench_align", "--model", args.model, "--child", str(wav)]
            proc = subprocess.run([*command, str(truth)], cwd=REPO, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(proc.stderr[-3000:])
            measured = json.loads(proc.stdout.strip().splitlines()[-1])
        print_table(
            f"Alignment of a {args.minutes:.0f}-minute recording (the joined file repeated) in one call, fresh process",
            [
                (
                    f"{measured['duration'] / 60:.1f} min",
                    f"{measured['peak_rss_gb']:.2f}",
                    f"{measured['duration'] / measured['seconds']:.0f}x",
                    f"{2 * measured['duration'] / measured['cpu_seconds']:.0f}x",
                    f"{measured['load']:.1f}",
                    f"{measured['aligned_words']} of {measured['words']}",
                    f"{measured['unaligned_words']}",
                    f"{measured['median_ms']:.0f} / {measured['p95_ms']:.0f}",
                )
            ],
            (
                "audio",
                "peak RSS (GB, target < 1.5)",
                "speed (x real time, wall)",
                "speed from CPU time (2 cores x audio s / CPU s)",
                "load average",
                "words with timings",
                "words reported unaligned",
                "median / p95 abs boundary error (ms)",
            ),
        )


if __name__ == "__main__":
    main()
