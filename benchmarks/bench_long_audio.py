"""Long audio: what transcribing a recording of changing voices costs in accuracy, and a 1-hour recording
transcribed in windows, with peak memory, against the alternatives.

Voice changes: the demo test utterances (unseen sentences and voices, each rendered by another voice setting) are
joined 21 at a time (~1 minute each) with 0.3-0.8 s pauses at a -80 dBFS noise floor. The baseline is the same
model transcribing every utterance on its own (greedy); against it, with the ratio of CERs:

* ``Transcriber`` with its default chunking (cut in pauses, parts transcribed alone);
* ``Transcriber`` with fixed 30 s windows and 4 s context (what it did before cutting in pauses);
* the model folder's pipeline (``trust_remote_code=True``) with ``chunk_length_s=20``, greedy: cut in pauses, each
  part read alone;
* transformers' own ASR pipeline class with ``chunk_length_s=20`` (greedy, fixed windows with strides).

Memory: the recording is the demo test utterances (unseen sentences and voices) joined by 0.3-0.8 s pauses and
repeated to the requested length, written to a real WAV file. Each measurement runs in its own process,
so its peak RSS is its own:

* ours, windowed: ``Transcriber`` (30 s windows, 4 s context each side, logits stitched, decoded once);
* ours, one pass over the first ``--unchunked-minutes`` (attention over the whole input), to check the
  windows change nothing on the parts they don't overlap;
* transformers' ASR pipeline with ``chunk_length_s=30`` on the same file (what a user would otherwise run).

    .venv/bin/python -m benchmarks.bench_long_audio --model runs/demo/model [--minutes 60] [--recordings 14]
"""

from __future__ import annotations

import argparse
import csv
import json
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


def build_recording(corpus: Path, minutes: float, path: Path) -> str:
    """Write the recording to ``path``; return its reference transcript."""
    from ai2text_hf.data.audio import load_audio

    with (corpus / "metadata.csv").open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    if not rows:
        raise SystemExit(f"{corpus}/metadata.csv has no test rows: run `make demo` (or ai2text synth) first")
    rng = np.random.default_rng(0)
    clips = [load_audio(corpus / row["file_path"], SR)[0] for row in rows]
    pieces, words, total = [], [], 0
    while total < minutes * 60 * SR:
        for clip, row in zip(clips, rows):
            pause = np.zeros(int(rng.uniform(0.3, 0.8) * SR), dtype=np.float32)
            pieces += [clip, pause]
            words.append(row["transcript"])
            total += len(clip) + len(pause)
            if total >= minutes * 60 * SR:
                break
    sf.write(path, np.concatenate(pieces), SR, subtype="PCM_16")
    return " ".join(words)


def voice_change_recordings(corpus: Path, count: int | None, per_recording: int = 21):
    """``(recordings, their references, the utterances, their references)``: ``count`` recordings (all the test
    split makes when None) of ``per_recording`` consecutive test utterances joined by pauses."""
    from ai2text_hf.data.audio import load_audio

    with (corpus / "metadata.csv").open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    groups = [rows[i : i + per_recording] for i in range(0, len(rows) - per_recording + 1, per_recording)]
    groups = groups[:count] if count else groups
    if not groups:
        raise SystemExit(f"{corpus}/metadata.csv has fewer than {per_recording} test rows: run `make demo` first")
    rng = np.random.default_rng(0)
    recordings, references, utterances = [], [], []
    for group in groups:
        clips = [load_audio(corpus / row["file_path"], SR)[0] for row in group]
        pauses = [(1e-4 * rng.standard_normal(int(rng.uniform(0.3, 0.8) * SR))).astype(np.float32) for _ in clips]
        recordings.append(np.concatenate([piece for pair in zip(clips, pauses) for piece in pair]))
        references.append(" ".join(row["transcript"] for row in group))
        utterances.append(clips)
    return recordings, references, utterances


def voice_changes(model: str, corpus: Path, count: int | None) -> None:
    """The voice-change table: per-utterance CER against the chunked ways of transcribing whole recordings."""
    import torch
    from transformers import AutomaticSpeechRecognitionPipeline, pipeline

    import ai2text_hf  # noqa: F401  (registers the model with the Auto classes)
    from ai2text_hf.decoding import DecodingOptions
    from ai2text_hf.inference import Transcriber
    from ai2text_hf.metrics import error_rates

    torch.set_num_threads(2)
    recordings, references, utterances = voice_change_recordings(corpus, count)
    transcriber = Transcriber(model, device="cpu", decoding=DecodingOptions())  # greedy, like the pipelines
    runs = {}
    start = time.perf_counter()
    runs["each utterance alone (baseline)"] = [
        " ".join(d.text for d in transcriber.transcribe_arrays(clips, False)) for clips in utterances
    ]
    seconds = {"each utterance alone (baseline)": time.perf_counter() - start}
    folder_asr = pipeline(
        "automatic-speech-recognition", model=model, device="cpu", trust_remote_code=True, use_lm=False
    )
    stock_asr = pipeline(
        "automatic-speech-recognition", model=model, device="cpu", pipeline_class=AutomaticSpeechRecognitionPipeline
    )
    ways = {
        "Transcriber, default chunking (cut in pauses)": lambda w: transcriber.transcribe_arrays([w], False)[0].text,
        "Transcriber, fixed 30 s windows, 4 s context": lambda w: (
            transcriber.transcribe_arrays([w], False, split_long=False)[0].text
        ),
        "the folder's pipeline, chunk_length_s=20 (cut in pauses)": lambda w: folder_asr(w.copy(), chunk_length_s=20)[
            "text"
        ],
        "transformers' pipeline class, chunk_length_s=20": lambda w: stock_asr(w.copy(), chunk_length_s=20)["text"],
    }
    for name, transcribe in ways.items():
        start = time.perf_counter()
        runs[name] = [transcribe(recording) for recording in recordings]
        seconds[name] = time.perf_counter() - start
    base = error_rates(references, runs["each utterance alone (baseline)"])["cer"]
    audio_seconds = sum(len(r) for r in recordings) / SR
    rows = []
    for name, texts in runs.items():
        cer = error_rates(references, texts)["cer"]
        rows.append((name, f"{100 * cer:.2f}", f"{cer / base:.2f}x", f"{seconds[name] / audio_seconds:.4f}"))
    minutes = audio_seconds / 60
    print_table(
        f"Long audio with voice changes: {len(recordings)} recordings of 21 test utterances ({minutes:.1f} min), "
        "greedy, 2 threads",
        rows,
        ("run", "CER %", "CER vs baseline", "RTF"),
    )


def child(mode: str, model: str, wav: str, seconds: float | None) -> dict:
    """One measurement, run in a fresh process: text, wall time and this process's peak RSS."""
    import torch

    torch.set_num_threads(2)
    from ai2text_hf.data.audio import load_audio

    audio = load_audio(wav, SR)[0]
    if seconds is not None:
        audio = audio[: int(seconds * SR)]
    start = time.perf_counter()
    if mode == "pipeline":
        from transformers import AutomaticSpeechRecognitionPipeline, pipeline

        import ai2text_hf  # noqa: F401  (registers the model with the Auto classes)

        asr = pipeline("automatic-speech-recognition", model=model, pipeline_class=AutomaticSpeechRecognitionPipeline)
        text = asr(audio, chunk_length_s=30, batch_size=8)["text"]
    else:
        from ai2text_hf.decoding import DecodingOptions
        from ai2text_hf.inference import Transcriber

        chunk = 30.0 if mode == "windowed" else float("inf")
        (decoded,) = Transcriber(
            model, device="cpu", chunk_seconds=chunk, decoding=DecodingOptions()
        ).transcribe_arrays([audio], False)
        text = decoded.text
    return {
        "seconds": time.perf_counter() - start,
        "audio_seconds": len(audio) / SR,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "text": text,
    }


def measure(mode: str, model: str, wav: Path, seconds: float | None = None) -> dict:
    command = [sys.executable, "-m", "benchmarks.bench_long_audio", "--child", mode, "--model", model]
    command += ["--wav", str(wav)]
    if seconds is not None:
        command += ["--seconds", str(seconds)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["killed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "runs" / "demo" / "model"), help="trained model folder")
    parser.add_argument("--corpus", default=str(REPO / "data" / "demo"), help="synthetic corpus (metadata.csv)")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the recording")
    parser.add_argument("--unchunked-minutes", type=float, default=10.0, help="prefix decoded in one pass")
    parser.add_argument(
        "--recordings", type=int, help="voice-change recordings of 21 test utterances (default: all there are)"
    )
    parser.add_argument("--skip-memory", action="store_true", help="only the voice-change table")
    parser.add_argument("--child", choices=("windowed", "unchunked", "pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--wav", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.model, args.wav, args.seconds), ensure_ascii=False))
        return

    voice_changes(args.model, Path(args.corpus), args.recordings)
    if args.skip_memory:
        return
    from ai2text_hf.metrics import error_rates

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "long.wav"
        reference = build_recording(Path(args.corpus), args.minutes, wav)
        prefix_seconds = args.unchunked_minutes * 60
        results = {
            f"ours, 30 s windows ({args.minutes:g} min)": measure("windowed", args.model, wav),
            f"pipeline, chunk_length_s=30 ({args.minutes:g} min)": measure("pipeline", args.model, wav),
            f"ours, 30 s windows (first {args.unchunked_minutes:g} min)": measure(
                "windowed", args.model, wav, prefix_seconds
            ),
            f"ours, one pass (first {args.unchunked_minutes:g} min)": measure(
                "unchunked", args.model, wav, prefix_seconds
            ),
        }
    rows = []
    for name, result in results.items():
        if "error" in result:
            rows.append((name, "failed: " + result["error"][:80], "", "", ""))
            continue
        # A prefix's reference: the share of the reference words its share of the audio holds (approximate
        # at the cut, which is why the windowed and one-pass texts are also compared with each other below).
        ref_words = reference.split()
        share = min(1.0, result["audio_seconds"] / (args.minutes * 60))
        ref = " ".join(ref_words[: round(len(ref_words) * share)])
        rows.append(
            (
                name,
                f"{result['seconds'] / result['audio_seconds']:.4f}",
                f"{result['peak_rss_gb']:.2f}",
                f"{100 * error_rates([ref], [result['text']])['cer']:.2f}",
                str(len(result["text"].split())),
            )
        )
    windowed = results[f"ours, 30 s windows (first {args.unchunked_minutes:g} min)"]
    one_pass = results[f"ours, one pass (first {args.unchunked_minutes:g} min)"]
    print_table(
        f"Long audio: {args.minutes:g}-minute recording of unseen test utterances, 2 threads",
        rows,
        ("run", "RTF", "peak RSS (GB)", "CER % (approx. alignment)", "words"),
    )
    if "text" in windowed and "text" in one_pass:
        diff = error_rates([one_pass["text"]], [windowed["text"]])["cer"]
        minutes = f"{args.unchunked_minutes:g}"
        print(f"\nWindowed vs one-pass text on the first {minutes} min: {100 * diff:.2f} % of characters differ.")


if __name__ == "__main__":
    main()
