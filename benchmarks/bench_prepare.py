"""Data preparation speed: hours of audio prepared per minute, the cache hit, and feature extraction.

Writes ``count`` utterances as 16 kHz WAV files with a metadata CSV and prepares them end to end (header
screening, decoding, hashing, checks, log-mels, Arrow writing), then prepares again with the same inputs
(the "up to date" cache hit). Finally runs ``bench_features`` on the same audio in the same run: ours vs
WhisperFeatureExtractor (numpy) vs torchaudio's Kaldi fbank, unpadded.

    .venv/bin/python -m benchmarks.bench_prepare [--count 200] [--num-proc N]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import soundfile as sf

from ai2text_hf.data import prepare_dataset

from . import bench_features
from .common import demo_waveforms, print_table


def main(count: int = 200, num_proc: int | None = None) -> None:
    waves = demo_waveforms(count)
    audio_seconds = sum(len(w) for w in waves) / 16000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_path", "transcript"])
            for index, wave in enumerate(waves):
                sf.write(root / f"{index:05d}.wav", wave, 16000)
                writer.writerow([f"{index:05d}.wav", "a"])
        start = time.perf_counter()
        prepare_dataset(root / "metadata.csv", root / "v1", num_proc=num_proc, progress=False)
        prepare_seconds = time.perf_counter() - start
        start = time.perf_counter()
        assert prepare_dataset(root / "metadata.csv", root / "v1", num_proc=num_proc, progress=False).cached
        cached_seconds = time.perf_counter() - start
    hours = audio_seconds / 3600
    print_table(
        f"Data preparation, {count} WAV files, {audio_seconds:.0f} s of audio, num_proc={num_proc or 1}",
        [
            (
                "prepare (decode, check, features, Arrow)",
                f"{prepare_seconds:.2f}",
                f"{hours / (prepare_seconds / 60):.3f}",
            ),
            ("prepare again (up to date)", f"{cached_seconds:.3f}", f"{prepare_seconds / cached_seconds:.0f}x faster"),
        ],
        ("run", "seconds", "audio hours per minute"),
    )
    bench_features.main(count)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="Utterances to prepare (default 200).")
    parser.add_argument("--num-proc", type=int, help="Processes for feature extraction (default 1).")
    args = parser.parse_args()
    main(args.count, args.num_proc)
