"""The ``ai2text`` command: one entry point, one subcommand per stage.

Heavy imports (torch, transformers, datasets) happen inside each subcommand so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="Make a synthetic Vietnamese speech corpus with espeak-ng.",
        description="Speak a sentence list with espeak-ng's three Vietnamese voices and write a corpus in the "
        "metadata CSV format (file_path,transcript,duration,split,speaker_id). Test sentences and test voice "
        "settings never occur in train, so the test split measures generalisation.",
    )
    p.add_argument(
        "--sentences",
        help="Sentence file: one per line, or a TSV whose first column is the sentence. "
        "Default: the package's own list of everyday Vietnamese sentences.",
    )
    p.add_argument("--output", required=True, help="Folder to write metadata.csv, synth.json and wavs/ into.")
    p.add_argument("--seed", type=int, help="Random seed for splits and voice settings (default 1234).")
    p.add_argument("--val-sentences", type=int, help="Sentences held out for the val split (default 100).")
    p.add_argument("--test-sentences", type=int, help="Sentences held out for the test split (default 300).")
    p.add_argument("--train-renditions", type=int, help="Voice settings speaking each train sentence (default 4).")
    p.add_argument("--max-sentences", type=int, help="Use only the first N sentences (quick runs).")
    p.add_argument("--workers", type=int, help="Parallel espeak-ng processes (default: CPU count).")


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="Validate a metadata CSV and build an Arrow dataset with log-mel features.",
        description="Read a metadata CSV, check every row, decode and resample audio to 16 kHz, normalise "
        "transcripts, compute log-mel features and save a DatasetDict (train/val/test) with report.json, "
        "stats.json and manifest.json. Unusable rows are skipped with a reason; the run never crashes on them.",
    )
    p.add_argument(
        "--csv", required=True, help="Metadata CSV with columns file_path,transcript[,duration,split,speaker_id]."
    )
    p.add_argument("--output", required=True, help="Dataset version folder to create, e.g. data/processed/v1.")
    p.add_argument("--audio-root", help="Folder relative file paths resolve against (default: the CSV's folder).")
    p.add_argument("--num-proc", type=int, help="Processes for feature extraction (default: CPU count).")
    p.add_argument("--min-duration", type=float, default=0.5, help="Skip shorter utterances, seconds (default 0.5).")
    p.add_argument("--max-duration", type=float, default=30.0, help="Skip longer utterances, seconds (default 30).")
    p.add_argument(
        "--tone-placement",
        choices=["classic", "modern"],
        default="classic",
        help="Tone mark placement for oa/oe/uy: classic 'hòa' (default) or modern 'hoà'.",
    )
    p.add_argument("--overwrite", action="store_true", help="Replace an existing dataset folder.")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="Train a CTC model with the Hugging Face Trainer from a YAML recipe.",
        description="Train on a prepared dataset. Any recipe key can be overridden as --key value "
        "(e.g. --learning_rate 5e-4 --num_epochs 3); see recipes/*.yaml and ai2text_hf/training/recipe.py "
        "for every key. Writes runs/<name>/{model,checkpoints,logs,recipe.yaml}.",
    )
    p.add_argument("--recipe", help="YAML recipe (e.g. recipes/demo-cpu.yaml). Without it, built-in defaults.")
    p.add_argument("--dataset", help="Prepared dataset folder (from `ai2text prepare`). Overrides the recipe's.")
    p.add_argument("--output-dir", help="Run folder, e.g. runs/demo. Overrides the recipe's.")
    p.add_argument("--resume", help="Resume from a checkpoint folder, or 'latest' for the newest in the run.")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="Score a model on a dataset split (WER, CER, RTF).",
        description="Greedy-decode a split of a prepared dataset and write eval_results.json and "
        "predictions.csv. WER here counts Vietnamese syllables (space-separated words).",
    )
    p.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    p.add_argument("--dataset", required=True, help="Prepared dataset folder.")
    p.add_argument("--split", default="test", help="Split to score: train, val or test (default test).")
    p.add_argument("--output", help="Where to write results (default runs/<name>/eval/<split>/).")
    p.add_argument("--limit", type=int, help="Score only the first N utterances.")


def _add_transcribe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transcribe",
        help="Transcribe audio files.",
        description="Print one line per file ('file<TAB>text'), or with --json one JSON object per file with "
        "text, duration and word timestamps. Any sample rate and channel count; WAV, FLAC, OGG, MP3.",
    )
    p.add_argument("files", nargs="+", help="Audio files.")
    p.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    p.add_argument("--json", action="store_true", help="One JSON object per file: file, text, duration, words.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai2text",
        description="Train, evaluate and use Vietnamese speech-to-text (CTC) models on the Hugging Face stack.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_synth, _add_prepare, _add_train, _add_evaluate, _add_transcribe):
        add(sub)
    return parser


def _run_synth(args: argparse.Namespace) -> None:
    from .data.synth import SynthConfig, default_sentences_path, synthesize_corpus

    options = {
        "seed": args.seed,
        "val_sentences": args.val_sentences,
        "test_sentences": args.test_sentences,
        "train_renditions": args.train_renditions,
        "max_sentences": args.max_sentences,
        "workers": args.workers,
    }
    csv_path = synthesize_corpus(
        args.sentences or default_sentences_path(), args.output, SynthConfig.from_dict(options)
    )
    print(f"Corpus written: {csv_path}")


def _run_prepare(args: argparse.Namespace) -> None:
    from .data.prepare import prepare_dataset

    result = prepare_dataset(
        args.csv,
        args.output,
        audio_root=args.audio_root,
        num_proc=args.num_proc,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        tone_placement=args.tone_placement,
        overwrite=args.overwrite,
    )
    print(f"Dataset written: {result.output_dir}")


def _run_train(args: argparse.Namespace, extra: list[str]) -> None:
    from .training.recipe import load_recipe, parse_overrides
    from .training.trainer import train

    recipe = load_recipe(args.recipe, parse_overrides(extra))
    result = train(recipe, dataset_dir=args.dataset, output_dir=args.output_dir, resume=args.resume)
    print(f"Model: {result.model_dir}")


def _run_evaluate(args: argparse.Namespace) -> None:
    from .evaluation import evaluate_split

    result = evaluate_split(args.model, args.dataset, args.split, args.output, limit=args.limit)
    m = result.metrics
    print("Evaluation Results:")
    print("==================")
    print(f"{args.split.capitalize()} Set: {m['num_samples']} samples")
    print(f"Duration: {m['hours']:.2f} hours\n")
    print("Metrics:")
    print(f"├── Word (syllable) Error Rate (WER): {100 * m['wer']:.2f}%")
    print(f"├── Character Error Rate (CER): {100 * m['cer']:.2f}%")
    print(f"├── Accuracy: {100 * (1 - m['wer']):.2f}%")
    print(f"└── Processing Speed: {m['rtf']:.4f}x realtime\n")
    print(f"Results written to {result.output_dir}")


def _run_transcribe(args: argparse.Namespace) -> None:
    from .inference import Transcriber

    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"No such audio file: {', '.join(missing)}")
    for result in Transcriber(args.model).transcribe_batch(args.files):
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            print(f"{result['file']}\t{result['text']}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command == "train":
            _run_train(args, extra)
        else:
            {"synth": _run_synth, "prepare": _run_prepare, "evaluate": _run_evaluate, "transcribe": _run_transcribe}[
                args.command
            ](args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
