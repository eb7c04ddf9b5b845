"""Segmentation (``ai2text segment``): cutting a long recording with its transcript back into utterances.

The demo test utterances are joined with 0.5 s of silence into one recording of 20 minutes (the 300 of them
make 18 minutes; the first ones follow again until 20) and segmented with its whole transcript. An utterance
is recovered when one cut starts and ends within 0.2 s of its speech onset and offset (energy, as in
bench_align). The cut corpus is then transcribed and its CER compared with the CER of the original utterance
files. Baseline, same run: voice-activity
segmentation (silero-vad, what ``segment`` does without a transcript), scored the same way.

    .venv/bin/python -m benchmarks.bench_segment --model runs/demo/model
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import soundfile as sf

from .bench_align import SR, joined_recording
from .common import REPO, print_table

TOLERANCE = 0.2


def recovered(cuts: list[tuple[float, float]], bounds: list[tuple[float, float]]) -> list[int | None]:
    """For each utterance, the index of the cut matching its onset and offset within TOLERANCE, or None."""
    found = []
    for onset, offset in bounds:
        match = [i for i, (s, e) in enumerate(cuts) if abs(s - onset) <= TOLERANCE and abs(e - offset) <= TOLERANCE]
        found.append(match[0] if match else None)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/demo/model")
    parser.add_argument("--corpus", default=str(REPO / "data" / "demo"))
    parser.add_argument("--utterances", type=int, default=None, help="first N test utterances (default: all)")
    parser.add_argument("--minutes", type=float, default=20.0, help="recording length; 0: each utterance once")
    args = parser.parse_args()

    import torch

    from ai2text_hf.corpus.align import Aligner
    from ai2text_hf.corpus.segment import segment_recording, segment_untranscribed
    from ai2text_hf.data.audio import load_audio
    from ai2text_hf.decoding import DecodingOptions
    from ai2text_hf.inference import Transcriber
    from ai2text_hf.metrics import error_rates

    torch.set_num_threads(2)
    wave, transcripts, bounds, files = joined_recording(Path(args.corpus), args.utterances, args.minutes or None)
    # Greedy decoding for the CER comparisons: the cuts' effect on the model, not on an LM's context.
    transcriber = Transcriber(args.model, device="cpu", decoding=DecodingOptions.create())
    aligner = Aligner(transcriber)
    originals = transcriber.transcribe_arrays([load_audio(f, SR)[0] for f in files], word_timestamps=False)
    original_cer = error_rates(transcripts, [d.text for d in originals])["cer"]

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        recording = Path(folder) / "recording.wav"
        sf.write(recording, wave, SR, subtype="PCM_16")
        runs = {
            "aligned to the transcript (ai2text segment)": lambda out: segment_recording(
                aligner, recording, " ".join(transcripts), out
            ),
            "baseline: silero-vad, no transcript": lambda out: segment_untranscribed(transcriber, recording, out),
        }
        for name, run in runs.items():
            out = Path(folder) / name.split()[0]
            start = time.perf_counter()
            result = run(out)
            seconds = time.perf_counter() - start
            cuts = [(c.start, c.end) for c in result.kept]
            matches = recovered(cuts, bounds)
            hits = [(i, m) for i, m in enumerate(matches) if m is not None]
            # CER of the cut files that match an utterance, against that utterance's reference.
            pieces = [wave[round(cuts[m][0] * SR) : round(cuts[m][1] * SR)] for _, m in hits]
            decoded = transcriber.transcribe_arrays(pieces, word_timestamps=False) if pieces else []
            cut_cer = error_rates([transcripts[i] for i, _ in hits], [d.text for d in decoded])["cer"] if hits else 1
            same = error_rates([transcripts[i] for i, _ in hits], [originals[i].text for i, _ in hits])["cer"]
            rows.append(
                (
                    name,
                    f"{len(result.kept)}",
                    f"{len(result.excluded)}",
                    f"{100 * len(hits) / len(bounds):.1f}",
                    f"{100 * cut_cer:.2f}",
                    f"{100 * (cut_cer - same):+.2f}" if hits else "",
                    f"{len(wave) / SR / seconds:.0f}x",
                )
            )
    print_table(
        f"Segmentation: {len(transcripts)} demo test utterances ({len(set(files))} different) joined by 0.5 s "
        f"({len(wave) / SR / 60:.1f} min), "
        f"recovered = one cut within {TOLERANCE} s of the speech onset and offset",
        rows,
        (
            "method",
            "cuts",
            "excluded",
            "recovered %",
            "CER % of matched cuts",
            "vs same originals (pt)",
            "speed (x real time)",
        ),
    )
    print(
        f"\nCER of all {len(files)} original utterance files: {100 * original_cer:.2f} %. Targets: >= 98 % recovered, "
        "cut corpus within 0.5 pt CER of the originals."
    )


if __name__ == "__main__":
    main()
