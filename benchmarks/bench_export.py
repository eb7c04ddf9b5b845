"""Exported models vs fp32 PyTorch: model time, size and accuracy of ONNX, ONNX int8 and ONNX int8 optimised.

Each variant is made by ``export_model``, which also checks parity: max |logit difference|, identical greedy
transcripts and, with --dataset, WER/CER of both, on the whole split unless --check-count says otherwise. Each
is timed in the same run as the PyTorch model on the same feature batches through ``Transcriber.logits``
(padding included, feature extraction excluded: it is the same for every variant). Target (performance
issue): >= 1.5x faster than fp32 PyTorch with WER within 0.3 pt.

    .venv/bin/python -m benchmarks.bench_export --model runs/demo/model --dataset data/processed/demo
    .venv/bin/python -m benchmarks.bench_export --quick      # smoke run: random-init model, few utterances
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ai2text_hf import AI2TextConfig, AI2TextFeatureExtractor, AI2TextForCTC, AI2TextProcessor, AI2TextTokenizer
from ai2text_hf.data.loading import load_scoring_split
from ai2text_hf.export import export_model
from ai2text_hf.inference import Transcriber

from .common import best_time, demo_waveforms, print_table

VARIANTS = {  # name -> export_model options
    "ONNX fp32": {},
    "ONNX int8": {"quantize": "int8"},
    "ONNX int8 + optimize": {"quantize": "int8", "optimize": True},
}
SETTINGS = ((1, 1), (2, 8))  # (threads, batch size), as bench_inference


def _random_model(folder: Path) -> Path:
    """The demo architecture (pitch columns on) with random weights, saved with a processor (speed does not
    depend on weights)."""
    AI2TextForCTC(AI2TextConfig(num_pitch_features=3)).save_pretrained(str(folder))
    extractor = AI2TextFeatureExtractor(pitch=True)
    AI2TextProcessor(feature_extractor=extractor, tokenizer=AI2TextTokenizer()).save_pretrained(str(folder))
    return folder


def _features(args: argparse.Namespace, model_dir: Path) -> list[np.ndarray]:
    if args.dataset:
        extractor = AI2TextFeatureExtractor.from_pretrained(model_dir)
        rows = load_scoring_split(Path(args.dataset), args.split, extractor, limit=args.count, purpose="export").dataset
        return [np.asarray(f, dtype=np.float32) for f in rows[:]["input_features"]]
    extractor = AI2TextFeatureExtractor.from_pretrained(model_dir)
    return [extractor(w, sampling_rate=16000)["input_features"][0] for w in demo_waveforms(args.count)]


def _run(transcriber: Transcriber, features: Sequence[np.ndarray], batch: int) -> None:
    for start in range(0, len(features), batch):
        transcriber.logits(features[start : start + batch])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a trained model folder (default: the demo architecture, random init)")
    parser.add_argument("--dataset", help="prepared dataset: its features for timing, its texts for WER/CER deltas")
    parser.add_argument("--split", default="test")
    parser.add_argument("--count", type=int, default=40, help="utterances timed (default 40)")
    parser.add_argument(
        "--check-count",
        type=int,
        help="utterances the logit, transcript and WER/CER comparison runs on (default: the whole split; on 40, "
        "one syllable is 0.27 WER points, too coarse for a 0.3-point budget)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 utterances, one timing repeat")
    args = parser.parse_args()
    if args.quick:
        args.count = args.check_count = 4
    repeats = 1 if args.quick else 3

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model) if args.model else _random_model(Path(tmp) / "model")
        features = _features(args, model_dir)
        audio_seconds = sum(len(f) for f in features) * 160 / 16000
        reports = {
            name: export_model(
                model_dir, Path(tmp) / name.replace(" ", "-"), dataset=args.dataset, split=args.split,
                limit=args.check_count, **options,
            ).report
            for name, options in VARIANTS.items()
        }
        folders = {"PyTorch fp32": model_dir} | {name: Path(tmp) / name.replace(" ", "-") for name in VARIANTS}
        seconds: dict[tuple[str, int, int], float] = {}
        for threads, batch in SETTINGS:
            torch.set_num_threads(threads)  # before loading: onnxruntime sessions take torch's thread count
            for name, folder in folders.items():
                transcriber = Transcriber(folder, device="cpu")
                seconds[name, threads, batch] = best_time(
                    functools.partial(_run, transcriber, features, batch), repeats=repeats
                )

    rows = []
    for name in folders:
        report = reports.get(name)
        size = (report["onnx_bytes"] if report else next(iter(reports.values()))["pytorch_bytes"]) / 1e6
        timings = []
        for threads, batch in SETTINGS:
            t = seconds[name, threads, batch]
            timings.append(f"{t / audio_seconds:.4f} ({seconds['PyTorch fp32', threads, batch] / t:.2f}x)")
        parity = report["parity"] if report else None
        accuracy = ["-", "-", "-"]
        if parity:
            deltas = "-"
            if "wer_delta" in parity:
                deltas = f"{100 * parity['wer_delta']:+.2f} / {100 * parity['cer_delta']:+.2f}"
            identical = f"{parity['identical_transcripts']}/{parity['utterances']}"
            accuracy = [f"{parity['max_abs_logit_diff']:.1e}", identical, deltas]
        rows.append((name, f"{size:.1f}", *timings, *accuracy))
    header = (
        "variant", "MB",
        *[f"RTF {threads} thr, batch {batch} (speed-up)" for threads, batch in SETTINGS],
        "max abs logit diff", "identical greedy", "WER / CER delta (pt)",
    )
    source = f"{args.dataset} {args.split}" if args.dataset else "demo waveforms"
    checked = next(iter(reports.values()))["parity"]["utterances"]
    print_table(
        f"Export variants vs fp32 PyTorch, model only, timed on {len(features)} utterances ({source}, "
        f"{audio_seconds:.0f} s of audio), compared on {checked}, model {args.model or 'random init'}",
        rows,
        header,
    )


if __name__ == "__main__":
    main()
