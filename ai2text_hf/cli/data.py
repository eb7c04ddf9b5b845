"""``ai2text synth``, ``import``, ``prepare``, ``stats`` and ``doctor``: making and checking datasets."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from ..data.options import PrepareOptions
from .options import add_dataclass_arguments, dataclass_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    _add_synth(sub)
    _add_import(sub)
    _add_prepare(sub)
    _add_stats(sub)
    _add_doctor(sub)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="Make a synthetic Vietnamese speech corpus with espeak-ng.",
        description="Speak a sentence list with espeak-ng's three Vietnamese voices and write a corpus in the "
        "metadata CSV format (file_path,transcript,duration,split,speaker_id). Test sentences and test voice "
        "settings never occur in train, so the test split measures generalisation. Every utterance gets its own "
        "level, a low coloured noise floor (no digital silence) and lead-in and tail lengths, like a recording.",
    )
    p.add_argument(
        "--sentences",
        help="Sentence file: one per line, or a TSV whose first column is the sentence. "
        "Default: the package's own list of everyday Vietnamese sentences.",
    )
    p.add_argument("--output", required=True, help="Folder to write metadata.csv, synth.json and wavs/ into.")
    p.add_argument("--seed", type=int, help="Random seed for splits and voice settings (default 1234).")
    p.add_argument("--val-sentences", type=int, help="Sentences held out for the validation split (default 100).")
    p.add_argument("--test-sentences", type=int, help="Sentences held out for the test split (default 300).")
    p.add_argument("--train-renditions", type=int, help="Voice settings speaking each train sentence (default 2).")
    p.add_argument("--max-sentences", type=int, help="Use only the first N sentences (quick runs).")
    p.add_argument("--workers", type=int, help="Parallel espeak-ng processes (default: CPU count).")
    grid = p.add_argument_group("voice grid (comma-separated values; default: SynthConfig's)")
    grid.add_argument("--variants", help="espeak-ng speaker variants, e.g. m1,f2,klatt (espeak-ng --voices=variant).")
    grid.add_argument("--speeds", help="Speaking rates in words per minute (espeak -s), e.g. 130,160,190.")
    grid.add_argument("--pitches", help="Base pitches 0-99 (espeak -p), e.g. 30,50,70.")
    grid.add_argument("--pitch-ranges", help="Pitch ranges 0-100 (SSML prosody range; espeak's default 50).")
    grid.add_argument("--word-gaps", help="Pauses between words in 10 ms units (espeak -g), e.g. 0,1,2.")
    recording = p.add_argument_group("recording conditions (LOW,HIGH, drawn per utterance; default: SynthConfig's)")
    recording.add_argument(
        "--speech-level-db", metavar="LOW,HIGH", help="RMS level of the speech in dBFS: --speech-level-db=-30,-20."
    )
    recording.add_argument(
        "--noise-floor-db", metavar="LOW,HIGH", help="RMS level of the noise floor in dBFS: --noise-floor-db=-75,-50."
    )
    recording.add_argument("--lead-in", metavar="LOW,HIGH", help="Seconds of noise floor before the speech.")
    recording.add_argument("--tail", metavar="LOW,HIGH", help="Seconds of noise floor after the speech.")
    p.set_defaults(handler=_run_synth)


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="Write a metadata CSV from a corpus in its published layout (VIVOS, Common Voice, a folder).",
        description="vivos: {train,test}/prompts.txt + waves/<speaker>/<id>.wav + genders.txt. commonvoice: "
        "train/dev/test.tsv (or --tsv validated) + clips/. folder: audio files with same-named .txt transcripts. "
        "Every listed utterance becomes a row; problems (missing audio, empty transcript) show up in the report "
        "of `ai2text prepare`.",
    )
    p.add_argument("format", choices=["vivos", "commonvoice", "folder"], help="Layout of the corpus.")
    p.add_argument("root", help="Corpus folder.")
    p.add_argument("--output", required=True, help="Metadata CSV to write, e.g. data/vivos.csv.")
    p.add_argument(
        "--tsv", help="commonvoice only: import this TSV (e.g. validated) without splits, not train/dev/test."
    )
    p.add_argument(
        "--speaker-from-folder",
        action="store_true",
        help="folder only: use each file's parent folder name as its speaker id.",
    )
    p.set_defaults(handler=_run_import)


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="Validate metadata CSVs and build an Arrow dataset with log-mel features.",
        description="Read one or more metadata CSVs (or a local Hugging Face dataset), check every row, decode and "
        "resample audio to 16 kHz, normalise transcripts, compute log-mel features and save a DatasetDict "
        "(train/validation/test) with report.json, stats.json, manifest.json and a dataset card (README.md). "
        "Unusable rows are skipped with reason codes and the fix; the run never crashes on them. Without a "
        "validation split, one is carved from train (--validation-from-train). Preparing again with the same "
        "inputs and options is a no-op ('up to date').",
    )
    add_dataclass_arguments(p, PrepareOptions)
    p.set_defaults(handler=_run_prepare)


def _add_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="Print statistics of a prepared dataset version.",
        description="Per split: files, hours, speakers, mean/min/max duration, characters per second, coverage of "
        "the Vietnamese alphabet and share of validation/test syllables seen in train.",
    )
    p.add_argument("dataset", help="Prepared dataset folder, e.g. data/processed/v1.")
    p.add_argument("--json", action="store_true", help="Print the statistics as one JSON object instead of a table.")
    p.set_defaults(handler=_run_stats)


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="Rank utterances whose transcript a trained model disagrees with (likely mislabelled).",
        description="Score every utterance with a trained model's per-utterance CTC loss (per label character) and "
        "greedy CER, and list the worst first for a person to review: audio that does not match its transcript "
        "ranks at the top. Writes all scores to a CSV.",
    )
    p.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    p.add_argument("--dataset", required=True, help="Prepared dataset folder.")
    p.add_argument("--split", action="append", help="Split to score (repeatable; default all).")
    p.add_argument("--sort", choices=["loss", "cer"], default="loss", help="Rank by loss per character or CER.")
    p.add_argument("--top", type=int, default=20, help="Utterances to print (default 20).")
    p.add_argument("--limit", type=int, help="Score only the first N utterances of each split.")
    p.add_argument("--output", help="CSV of all scores (default runs/<name>/eval/doctor/<dataset>.csv).")
    p.set_defaults(handler=_run_doctor)


def _run_synth(args: argparse.Namespace) -> None:
    from ..data.synth import SynthConfig, default_sentences_path, synthesize_corpus

    options = {
        "seed": args.seed,
        "val_sentences": args.val_sentences,
        "test_sentences": args.test_sentences,
        "train_renditions": args.train_renditions,
        "max_sentences": args.max_sentences,
        "workers": args.workers,
        **{
            key: getattr(args, key)
            for key in ("variants", "speeds", "pitches", "pitch_ranges", "word_gaps")
            + ("speech_level_db", "noise_floor_db", "lead_in", "tail")
        },
    }
    csv_path = synthesize_corpus(
        args.sentences or default_sentences_path(), args.output, SynthConfig.from_dict(options)
    )
    print(f"Corpus written: {csv_path}")


def _run_import(args: argparse.Namespace) -> None:
    from ..data import importers

    if args.format == "vivos":
        result = importers.import_vivos(args.root, args.output)
    elif args.format == "commonvoice":
        result = importers.import_commonvoice(args.root, args.output, tsv=args.tsv)
    else:
        result = importers.import_folder(args.root, args.output, speaker_from_folder=args.speaker_from_folder)
    print(result.summary())


def _run_prepare(args: argparse.Namespace) -> None:
    from ..data.prepare import prepare_dataset, reuse_prepared

    options = dataclass_from_args(PrepareOptions, args)
    options = dataclasses.replace(options, num_proc=options.num_proc or os.cpu_count())
    # An identical re-run is answered from the manifest without loading torch.
    result = reuse_prepared(options) or prepare_dataset(options)
    print(f"Report written: {result.report_path}" if options.validate_only else f"Dataset: {result.output_dir}")


def _run_stats(args: argparse.Namespace) -> None:
    from ..data.stats import dataset_statistics, format_statistics

    stats = dataset_statistics(args.dataset)
    print(json.dumps(stats, indent=2) if args.json else format_statistics(stats))


def _run_doctor(args: argparse.Namespace) -> None:
    from ..evaluation.doctor import diagnose, format_suspects, write_suspects
    from ..evaluation.evaluate import default_output_dir

    suspects = diagnose(args.model, args.dataset, splits=args.split, sort_by=args.sort, limit=args.limit)
    output = args.output or default_output_dir(Path(args.model), "doctor") / f"{Path(args.dataset).name}.csv"
    print(format_suspects(suspects, args.top))
    print(f"All {len(suspects)} scores written to {write_suspects(suspects, output)}")
