"""The ``ai2text`` command: one entry point, one subcommand per stage.

Each subcommand imports what it needs (datasets, the Trainer, the decoders) only when it runs, and importing
the package loads neither torch nor transformers: ``--help`` and an up-to-date ``prepare`` answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .decoding import DecodingOptions
    from .serving import ServeSettings


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
    p.add_argument("--val-sentences", type=int, help="Sentences held out for the val split (default 100).")
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


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="Validate a metadata CSV and build an Arrow dataset with log-mel features.",
        description="Read a metadata CSV (or a local Hugging Face dataset), check every row, decode and resample "
        "audio to 16 kHz, normalise transcripts, compute log-mel features and save a DatasetDict (train/val/test) "
        "with report.json, stats.json and manifest.json. Unusable rows are skipped with reason codes and the fix; "
        "the run never crashes on them. Preparing again with the same inputs and options is a no-op ('up to date').",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--csv", help="Metadata CSV with columns file_path,transcript[,duration,split,speaker_id,...extra columns]."
    )
    source.add_argument(
        "--hf-dataset",
        help="Local Hugging Face dataset instead of a CSV: a save_to_disk folder, parquet file(s) or an audiofolder.",
    )
    p.add_argument(
        "--output", help="Dataset version folder to create, e.g. data/processed/v1 (not needed with --validate-only)."
    )
    p.add_argument(
        "--audio-root",
        help="Folder relative file paths resolve against (default: the CSV's or dataset's folder); "
        "paths leaving it are refused.",
    )
    p.add_argument(
        "--allow-outside-root", action="store_true", help="Accept file paths outside the audio root (trusted CSVs)."
    )
    p.add_argument("--audio-column", default="audio", help="--hf-dataset column holding the audio (default audio).")
    p.add_argument("--text-column", default="text", help="--hf-dataset column holding the transcript (default text).")
    p.add_argument("--speaker-column", help="--hf-dataset column holding the speaker id (optional).")
    p.add_argument("--num-proc", type=int, help="Processes for feature extraction (default: CPU count).")
    p.add_argument("--batch-size", type=int, default=64, help="Rows per feature-extraction batch (default 64).")
    p.add_argument("--min-duration", type=float, default=0.5, help="Skip shorter utterances, seconds (default 0.5).")
    p.add_argument("--max-duration", type=float, default=30.0, help="Skip longer utterances, seconds (default 30).")
    p.add_argument(
        "--duration-tolerance",
        type=float,
        default=0.1,
        help="Skip a row whose CSV duration differs from the audio's by more, seconds (default 0.1).",
    )
    p.add_argument(
        "--silence-db", type=float, default=-60.0, help="Skip clips quieter than this RMS level, dBFS (default -60)."
    )
    p.add_argument(
        "--max-clipped",
        type=float,
        default=0.01,
        help="Skip clips with a larger share of samples at full scale (default 0.01 = 1%%).",
    )
    p.add_argument(
        "--tone-placement",
        choices=["classic", "modern"],
        default="classic",
        help="Tone mark placement for oa/oe/uy: classic 'hòa' (default) or modern 'hoà'.",
    )
    p.add_argument("--n-mels", type=int, help="Mel bins (default 80); must match the recipe's n_mels.")
    p.add_argument(
        "--pitch",
        action="store_true",
        help="Three pitch columns per frame (voicing, log-F0, its slope) after the mel bins, for a recipe with "
        "pitch: true such as recipes/demo-cpu.yaml (default: off, as in recipes). They let a model "
        "tell Vietnamese tones apart given a few hours of speech or more.",
    )
    p.add_argument(
        "--pitch-norm-window",
        type=float,
        metavar="SECONDS",
        help="With --pitch: centre the log-F0 on the voiced mean of this many seconds around each frame "
        "(default 1.5; 0: the whole utterance); the recipe's pitch_norm_window (null for 0).",
    )
    p.add_argument("--n-fft", type=int, help="FFT and window size in samples (default 400); the recipe's n_fft.")
    p.add_argument("--hop-length", type=int, help="Feature hop in samples (default 160); the recipe's hop_length.")
    p.add_argument("--sample-rate", type=int, help="Rate audio is resampled to (default 16000); the recipe's.")
    p.add_argument(
        "--subsampling-factor",
        type=int,
        default=4,
        help="The model's time reduction (default 4): decides which transcripts are too long for CTC.",
    )
    p.add_argument(
        "--auto-split",
        metavar="TRAIN,VAL,TEST",
        help="Ignore the split column and make a deterministic speaker-disjoint split, e.g. 0.9,0.05,0.05.",
    )
    p.add_argument("--split-seed", type=int, default=0, help="Seed of --auto-split (default 0).")
    p.add_argument(
        "--on-the-fly",
        action="store_true",
        help="Store 16 kHz audio (column 'audio') instead of features; the training collator computes features, "
        "so waveform augmentation can happen at training time.",
    )
    p.add_argument("--strict", action="store_true", help="Exit non-zero and write no dataset if any row has a problem.")
    p.add_argument(
        "--validate-only", action="store_true", help="Only check the rows and write the report (--report); no dataset."
    )
    p.add_argument("--report", help="Also write report.json (one entry per row) here; required with --validate-only.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing dataset version prepared differently.")


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


def _add_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="Print statistics of a prepared dataset version.",
        description="Per split: files, hours, speakers, mean/min/max duration, characters per second, coverage of "
        "the Vietnamese alphabet and share of val/test syllables seen in train.",
    )
    p.add_argument("dataset", help="Prepared dataset folder, e.g. data/processed/v1.")
    p.add_argument("--json", action="store_true", help="Print the statistics as one JSON object instead of a table.")


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


def _recipe_keys_help() -> str:
    """Every recipe key with its default, for the --help of train and tune (the defaults live in Recipe)."""
    from .training.recipe import Recipe

    lines = ["recipe keys (override any as --key value, sections as --section.key value; defaults shown):"]
    for key, value in Recipe().to_dict().items():
        if isinstance(value, dict) and key != "training_args":
            value = ", ".join(f"{k}={v}" for k, v in value.items())
            lines.append(f"  --{key}.KEY   {value}")
        elif key != "training_args":
            lines.append(f"  --{key} ({value})")
    lines.append(
        "  ...and any transformers.TrainingArguments field (e.g. --max_steps 1000, --disable_tqdm). "
        "A true/false key alone (--reset-head) means true. Precedence: command line > recipe > defaults."
    )
    lines.append("  What each key does: docs/training-guide.md#every-key.")
    return "\n".join(lines)


class _RecipeKeysFormatter(argparse.RawDescriptionHelpFormatter):
    """Ends --help with every recipe key, built only when help is shown: it imports the training stack (torch),
    which every other command (e.g. an up-to-date `ai2text prepare`) must not pay for."""

    def format_help(self) -> str:
        self.add_text(_recipe_keys_help())
        return super().format_help()


def _add_recipe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recipe",
        "--config",
        help="YAML recipe (e.g. recipes/demo-cpu.yaml, recipes/conformer-medium.yaml); --config is the guide's "
        "name for it. Without it, built-in defaults.",
    )
    p.add_argument(
        "--dataset",
        help="Prepared dataset folder (from `ai2text prepare`), or a metadata CSV to stream. Overrides the recipe's.",
    )
    p.add_argument(
        "--output-dir", help="Run folder, e.g. runs/demo (the guide's --checkpoint_dir). Overrides the recipe's."
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="Train a CTC model with the Hugging Face Trainer from a YAML recipe.",
        description="Train on a prepared dataset. Any recipe key can be overridden as --key value "
        "(e.g. --learning_rate 5e-4 --num_epochs 3 --augmentation.noise_prob 0.3). A preflight checks the dataset, "
        "the output folder, free disk, device and precision before the first step. Writes "
        "runs/<name>/{model,checkpoints,logs,recipe.yaml}. Under `accelerate launch --config_file "
        "accelerate_configs/X.yaml scripts/train.py ...` the launcher's mixed precision wins over the recipe's.",
        formatter_class=_RecipeKeysFormatter,
    )
    _add_recipe_options(p)
    p.add_argument(
        "--resume",
        metavar="PATH|latest",
        help="Resume from a checkpoint folder, or 'latest' for the newest in the run's checkpoints/.",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="Train into an --output-dir that already holds a run: its model and checkpoints are deleted once the "
        "new run has passed its checks. Without it (or --resume) such a folder is refused.",
    )
    p.add_argument(
        "--multi_gpu",
        "--multi-gpu",
        action="store_true",
        help="The guide's flag. Several GPUs take a launcher: `accelerate launch --config_file "
        "accelerate_configs/multi-gpu.yaml scripts/train.py ...` or `torchrun --nproc_per_node N "
        "scripts/train.py ...`; alone it only prints this and trains with the processes it has.",
    )


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="Search hyperparameters with Optuna (Trainer.hyperparameter_search).",
        description="Train --n-trials models with values drawn from the recipe's tune.search_space (e.g. "
        "learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}; types float, int, categorical) and "
        "score each by metric_for_best_model on the val split. Writes runs/<name>/best-recipe.yaml (a complete "
        "recipe for `ai2text train --recipe`), trials.json and optuna.db (running again continues the study). "
        "Needs `pip install ai2text-hf[tune]`.",
        formatter_class=_RecipeKeysFormatter,
    )
    _add_recipe_options(p)
    p.add_argument("--n-trials", type=int, help="Trials to run (default: the recipe's tune.n_trials).")


def _add_average(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "average",
        help="Average the weights of several checkpoints into one model folder.",
        description="Checkpoint averaging: the mean of the weights of several checkpoints of one run, written as a "
        "complete model folder (config, weights, processor) that `pipeline()`, `ai2text evaluate` and "
        "`ai2text transcribe` load. Averaging the last few checkpoints usually gives a slightly better, steadier "
        "model than any one of them. Give the checkpoints with --checkpoints, or a run with --run and --last.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoints", nargs="+", metavar="DIR", help="Checkpoint folders (checkpoint-N) to average.")
    which.add_argument("--run", metavar="DIR", help="A run folder (runs/<name>): average its newest checkpoints.")
    p.add_argument("--last", type=int, default=5, help="With --run: how many of the newest checkpoints (default 5).")
    p.add_argument("--output", required=True, metavar="DIR", help="Folder for the averaged model.")


def _add_decoding_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding", "Greedy by default; beam search with --beam-width, --lm or --hotwords.")
    g.add_argument(
        "--beam-width", type=int, help="CTC prefix beam search width (default 1 = greedy; 10 with --lm or --hotwords)."
    )
    g.add_argument("--lm", help="N-gram language model folder from `ai2text lm build` (or an ARPA file).")
    g.add_argument(
        "--lm-weight",
        type=float,
        help="Weight of the LM log probability (default: the value `ai2text lm tune` stored with the LM, else 0.5).",
    )
    g.add_argument(
        "--word-score",
        type=float,
        help="Bonus per word with --lm; raise it if the LM merges words (default: the LM's tuned value, else 3).",
    )
    g.add_argument("--hotwords", help="File of phrases to boost (names, places, terms), one per line.")
    g.add_argument("--hotword-weight", type=float, help="Bonus per letter of a hotword phrase (default 1.5).")
    g.add_argument("--token-beam", type=int, help="Tokens tried per frame in beam search (default 5).")
    g.add_argument("--beam-threshold", type=float, help="Drop hypotheses this far below the best (default 15).")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="Score a model on a dataset split (WER, CER, tone errors, RTF, per speaker).",
        description="Decode a split of a prepared dataset, print the report and write eval_results.json and "
        "predictions.csv (and report.html with --html); append a summary to the model's evaluations.json. "
        "WER here counts Vietnamese syllables (space-separated words).",
    )
    p.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    p.add_argument("--dataset", required=True, help="Prepared dataset folder.")
    p.add_argument("--split", default="test", help="Split to score: train, val or test (default test).")
    p.add_argument("--output", help="Where to write results (default runs/<name>/eval/<split>/).")
    p.add_argument("--limit", type=int, help="Score only the first N utterances.")
    p.add_argument("--html", action="store_true", help="Also write report.html: plots and the worst utterances.")
    _add_decoding_options(p)


def _add_transcribe(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transcribe",
        help="Transcribe audio files.",
        description="Print one line per file ('file<TAB>text'), or with --json one JSON object per file with "
        "text, confidence, duration and word timestamps with confidences. Any sample rate and channel count; "
        "WAV, FLAC, OGG, MP3. Files are batched by duration.",
    )
    p.add_argument("files", nargs="+", help="Audio files.")
    p.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    p.add_argument(
        "--json", action="store_true", help="One JSON object per file: file, text, confidence, duration, words."
    )
    _add_decoding_options(p)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="Print two evaluations side by side (compare with a baseline).",
        description="Show two eval_results.json files (or their folders) side by side, B against A, with the "
        "change of every metric; warns when they scored different data.",
    )
    p.add_argument("baseline", help="eval_results.json (or its folder) of the baseline, A.")
    p.add_argument("candidate", help="eval_results.json (or its folder) to compare with it, B.")


def _add_lm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lm",
        help="Build n-gram language models for beam search.",
        description="Language models for `--lm`: syllable n-grams with interpolated modified Kneser-Ney "
        "smoothing, written as ARPA (read by the decoder's KenLM).",
    )
    actions = p.add_subparsers(dest="lm_command", required=True, metavar="ACTION")
    b = actions.add_parser(
        "build",
        help="Build a syllable n-gram LM from text files.",
        description="Normalise the text like transcripts and estimate a syllable n-gram LM; writes lm.arpa "
        "and lm.json into --output.",
    )
    b.add_argument(
        "--text",
        nargs="+",
        required=True,
        help="Text files: one sentence per line, a TSV (first column) or a metadata CSV (transcript column).",
    )
    b.add_argument("--output", required=True, help="Folder to write lm.arpa and lm.json into.")
    b.add_argument("--order", type=int, default=3, choices=[2, 3, 4, 5], help="N-gram order (default 3).")
    b.add_argument(
        "--exclude", nargs="+", default=[], help="Files of sentences to leave out, e.g. the test transcripts."
    )
    b.add_argument(
        "--splits", nargs="+", help="With metadata CSVs: use only rows of these splits (e.g. --splits train)."
    )
    b.add_argument(
        "--tone-placement",
        choices=["classic", "modern"],
        default="classic",
        help="Tone placement of the model the LM is for (default classic).",
    )
    t = actions.add_parser(
        "tune",
        help="Find the LM weight and word score for a model on a held-out split.",
        description="Run the model once over --split (val by default; tuning on test would fit the weights to "
        "the score you report), decode it with beam search at every point of the --lm-weights x --word-scores "
        "grid, print the grid and store the best pair in the LM folder's decoding.json. Evaluate, transcribe "
        "and the pipeline then use it with --lm unless --lm-weight/--word-score are given.",
    )
    t.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    t.add_argument("--dataset", required=True, help="Prepared dataset folder.")
    t.add_argument("--lm", required=True, help="LM folder from `ai2text lm build`; decoding.json is written into it.")
    t.add_argument("--split", default="val", help="Held-out split to tune on (default val).")
    t.add_argument("--beam-width", type=int, default=50, help="Beam width to tune for (default 50).")
    t.add_argument("--lm-weights", type=float, nargs="+", help="LM weights to try (default 0.5 to 1.5).")
    t.add_argument("--word-scores", type=float, nargs="+", help="Word scores to try (default 1.5 to 9).")
    t.add_argument("--metric", choices=["cer", "wer"], default="cer", help="What to minimise (default cer).")
    t.add_argument("--limit", type=int, help="Use only the first N utterances of the split.")


def _add_push(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push",
        help="Upload a model folder to the Hugging Face Hub with a generated model card.",
        description="Upload the weights (safetensors), config, tokenizer, feature extractor/processor and the model "
        "code files that config.json's auto_map names, plus a README.md model card (language vi, license, tags, "
        "datasets, model-index with the last evaluation's WER/CER, the training recipe and a pipeline(..., "
        "trust_remote_code=True) snippet). The token comes from --token, HF_TOKEN or `hf auth login`.",
    )
    p.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    p.add_argument("--repo-id", required=True, help="Hub repository ORG/NAME; created when it does not exist.")
    p.add_argument("--private", action="store_true", help="Create the repository as private (no effect if it exists).")
    p.add_argument("--revision", help="Branch to commit to (created from main when missing; default main).")
    p.add_argument("--license", default="apache-2.0", help="License id for the model card (default apache-2.0).")
    p.add_argument("--token", help="Hub token with write access (default: HF_TOKEN or the saved login).")
    p.add_argument("--commit-message", help="Commit message (default 'Upload <model folder>').")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="Export a model to ONNX (optionally int8-quantized / graph-optimised) and check parity.",
        description="Write --output with model.onnx (dynamic batch and time axes, run by onnxruntime) and the "
        "config, tokenizer and feature-extractor files, so `ai2text transcribe --model OUTPUT` (and evaluate) run "
        "the export. Parity with the PyTorch model (max |logit difference|, identical greedy transcripts, model "
        "time, WER/CER with --dataset) is printed and written to OUTPUT/export_report.json. Needs the export extra "
        "(pip install 'ai2text-hf[export]').",
    )
    p.add_argument("--model", required=True, help="PyTorch model folder, e.g. runs/demo/model.")
    p.add_argument("--output", required=True, help="Folder to write the export into, e.g. runs/demo/onnx.")
    p.add_argument(
        "--onnx", action="store_true", help="Export to ONNX: the only export format, so it is also the default."
    )
    p.add_argument(
        "--quantize", choices=["int8"], help="int8 dynamic quantization of the weight matrices (onnxruntime's)."
    )
    p.add_argument(
        "--optimize", action="store_true", help="onnxruntime's offline graph optimisation of the final ONNX graph."
    )
    p.add_argument(
        "--dataset", help="Prepared dataset to check parity and WER/CER on (default: random features, no WER/CER)."
    )
    p.add_argument("--split", default="test", help="Split of --dataset to check on (default test).")
    p.add_argument("--limit", type=int, help="Check on only the first N utterances of the split.")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="Serve models over HTTP: a transcription API and a web page to try it.",
        description="Run the HTTP API (FastAPI + uvicorn; needs the serve extra: pip install 'ai2text-hf[serve]'). "
        "POST /transcribe takes a multipart 'audio' file and the form fields model, beam_width, timestamps "
        "(none|word) and hotwords (a query parameter or unknown field is refused); GET /health (503 while the "
        "default model is not loaded), GET /models; API docs at /docs and a page at / to upload or record audio. "
        "Concurrent requests to a model are micro-batched into shared model runs. Every upload's channels, rate and "
        "length are checked from its header before it is decoded; other request bodies are limited to 64 KiB. "
        "Security: it listens on 127.0.0.1; it answers only for localhost, IP addresses and --allowed-host names "
        "(against DNS rebinding); with an API key (--api-key-file or $AI2TEXT_API_KEY) every request but the page, "
        "/docs and /health must send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'; POST /models/load and "
        "DELETE /models/{name} are off unless --allow-model-management; browsers may call it from other sites only "
        "with --cors-origin.",
    )
    p.add_argument(
        "--model", required=True, help="Model folder loaded at start and used by default, e.g. runs/demo/model."
    )
    p.add_argument(
        "--models-dir",
        default="runs",
        help="With --allow-model-management, every <DIR>/<name>/model folder can be loaded by name with "
        "POST /models/load (default runs). Clients name runs, never paths.",
    )
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1: this machine only).")
    p.add_argument("--port", type=int, default=8000, help="Port to listen on (default 8000; 0 picks a free one).")
    limits = p.add_argument_group("upload limits (checked from the file's header before decoding)")
    limits.add_argument("--max-upload-mb", type=float, default=20.0, help="Largest audio file, MiB (default 20).")
    limits.add_argument(
        "--max-audio-seconds", type=float, default=120.0, help="Longest recording, seconds (default 120)."
    )
    limits.add_argument("--max-channels", type=int, default=8, help="Most channels in a file (default 8).")
    limits.add_argument("--max-sample-rate", type=int, default=96_000, help="Highest sample rate, Hz (default 96000).")
    limits.add_argument(
        "--max-decoded-mb",
        type=float,
        default=64.0,
        help="Largest decoded size, MiB: frames x channels x 4 bytes (default 64, e.g. 120 s of 48 kHz stereo is "
        "44). It bounds the memory of a decode (about three times this at its peak), whatever the compression.",
    )
    limits.add_argument(
        "--decode-workers", type=int, default=2, help="Uploads decoded at once; the others wait (default 2)."
    )
    p.add_argument("--max-beam-width", type=int, default=64, help="Largest beam width a request may ask (default 64).")
    p.add_argument("--batch-size", type=int, default=16, help="Most requests run together in one batch (default 16).")
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=2.0,
        help="How long a batch waits for more requests after its first, milliseconds (default 2); requests "
        "arriving while the model runs join the next batch anyway.",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=64,
        help="Transcriptions the server holds at once (being uploaded, decoded or waiting for a model); more get "
        "503 before their upload is read (default 64).",
    )
    access = p.add_argument_group("access")
    access.add_argument(
        "--api-key-file",
        help="File whose first line is the API key every request must send (except the page, /docs and /health). "
        "Default: $AI2TEXT_API_KEY when set, else no key. The key is never logged.",
    )
    access.add_argument(
        "--allow-model-management",
        action="store_true",
        help="Enable POST /models/load and DELETE /models/{name} (off by default: 403). Use with an API key.",
    )
    access.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="Host name clients may reach the server by, besides localhost and IP addresses (repeatable; '*' for "
        "any). Other names are refused (400), which stops DNS-rebinding pages.",
    )
    access.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="Origin (e.g. https://app.example.com) whose web pages may call the API from a browser (repeatable). "
        "Default none: browsers keep other sites' pages from reading its answers.",
    )
    p.add_argument("--device", help="Torch device for the models, e.g. cpu or cuda (default: CUDA when available).")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (default info: one line per request).",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai2text",
        description="Train, evaluate and use Vietnamese speech-to-text (CTC) models on the Hugging Face stack.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_synth,
        _add_import,
        _add_prepare,
        _add_stats,
        _add_train,
        _add_tune,
        _add_average,
        _add_evaluate,
        _add_doctor,
        _add_transcribe,
        _add_compare,
        _add_lm,
        _add_serve,
        _add_push,
        _add_export,
    ):
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


def _run_prepare(args: argparse.Namespace) -> None:
    from .data.prepare import prepare_dataset, reuse_prepared

    if not args.validate_only and not args.output:
        raise ValueError("prepare needs --output (the dataset version folder), or --validate-only --report PATH.")
    # Every option as given, paths made absolute: an identical re-run is answered without loading torch.
    paths = ("csv", "output", "hf_dataset", "audio_root", "report")
    request = {k: str(Path(v).absolute()) if k in paths and v else v for k, v in vars(args).items()}
    if not (args.validate_only or args.overwrite):
        sources = {"csv_path": args.csv, "hf_dataset": args.hf_dataset, "audio_root": args.audio_root}
        if reuse_prepared(args.output, request, **sources, report_path=args.report, strict=args.strict):
            print(f"Dataset: {Path(args.output).absolute()}")
            return
    from .feature_extraction_ai2text import AI2TextFeatureExtractor

    settings = {
        "feature_size": args.n_mels,
        "n_fft": args.n_fft,
        "win_length": args.n_fft,
        "hop_length": args.hop_length,
        "sampling_rate": args.sample_rate,
        "pitch": args.pitch,
    }
    settings = {k: v for k, v in settings.items() if v is not None}  # not given: the extractor's default
    if args.pitch_norm_window is not None:
        settings["pitch_norm_window"] = args.pitch_norm_window or None  # 0: centre on the whole utterance
    result = prepare_dataset(
        args.csv,
        args.output,
        feature_extractor=AI2TextFeatureExtractor(**settings),
        subsampling_factor=args.subsampling_factor,
        hf_dataset=args.hf_dataset,
        audio_column=args.audio_column,
        text_column=args.text_column,
        speaker_column=args.speaker_column,
        audio_root=args.audio_root,
        allow_outside_root=args.allow_outside_root,
        num_proc=args.num_proc or os.cpu_count(),
        batch_size=args.batch_size,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        duration_tolerance=args.duration_tolerance,
        silence_db=args.silence_db,
        max_clipped_share=args.max_clipped,
        tone_placement=args.tone_placement,
        auto_split_ratios=args.auto_split,
        split_seed=args.split_seed,
        on_the_fly=args.on_the_fly,
        strict=args.strict,
        validate_only=args.validate_only,
        report_path=args.report,
        overwrite=args.overwrite,
        request=request,
    )
    print(f"Report written: {result.report_path}" if args.validate_only else f"Dataset: {result.output_dir}")


def _run_import(args: argparse.Namespace) -> None:
    from .data import importers

    if args.format == "vivos":
        result = importers.import_vivos(args.root, args.output)
    elif args.format == "commonvoice":
        result = importers.import_commonvoice(args.root, args.output, tsv=args.tsv)
    else:
        result = importers.import_folder(args.root, args.output, speaker_from_folder=args.speaker_from_folder)
    print(result.summary())


def _run_stats(args: argparse.Namespace) -> None:
    from .data.stats import dataset_statistics, format_statistics

    stats = dataset_statistics(args.dataset)
    print(json.dumps(stats, indent=2) if args.json else format_statistics(stats))


def _run_doctor(args: argparse.Namespace) -> None:
    from .evaluation.doctor import diagnose, format_suspects, write_suspects
    from .evaluation.evaluate import default_output_dir

    suspects = diagnose(args.model, args.dataset, splits=args.split, sort_by=args.sort, limit=args.limit)
    output = args.output or default_output_dir(Path(args.model), "doctor") / f"{Path(args.dataset).name}.csv"
    print(format_suspects(suspects, args.top))
    print(f"All {len(suspects)} scores written to {write_suspects(suspects, output)}")


def _run_train(args: argparse.Namespace, extra: list[str]) -> None:
    from .training.recipe import load_recipe, parse_overrides
    from .training.trainer import train

    if args.multi_gpu:
        print(
            "--multi_gpu: training on several GPUs takes a launcher, e.g. `accelerate launch --config_file "
            "accelerate_configs/multi-gpu.yaml scripts/train.py ...` or `torchrun --nproc_per_node N "
            f"scripts/train.py ...`. Continuing with {os.environ.get('WORLD_SIZE', 1)} process(es).",
            file=sys.stderr,
        )
    recipe = load_recipe(args.recipe, parse_overrides(extra))
    result = train(
        recipe, dataset_dir=args.dataset, output_dir=args.output_dir, resume=args.resume, overwrite=args.overwrite
    )
    print(f"Model: {result.model_dir}")


def _run_tune(args: argparse.Namespace, extra: list[str]) -> None:
    from .training.recipe import load_recipe, parse_overrides
    from .training.tune import tune

    result = tune(load_recipe(args.recipe, parse_overrides(extra)), args.dataset, args.output_dir, args.n_trials)
    print(f"Best: {result.best_params} ({result.best_value:.4f}). Recipe: {result.recipe_path}")


def _decoding_options(args: argparse.Namespace) -> DecodingOptions:
    from .decoding import DecodingOptions

    return DecodingOptions.create(
        beam_width=args.beam_width,
        lm=args.lm,
        lm_weight=args.lm_weight,
        word_score=args.word_score,
        hotwords=args.hotwords,
        hotword_weight=args.hotword_weight,
        token_beam=args.token_beam,
        beam_threshold=args.beam_threshold,
    )


def _run_evaluate(args: argparse.Namespace) -> None:
    from .evaluation import evaluate_split, format_report

    result = evaluate_split(
        args.model,
        args.dataset,
        args.split,
        args.output,
        limit=args.limit,
        decoding=_decoding_options(args),
        html=args.html,
    )
    print(format_report(result.metrics))
    print(f"\nResults written to {result.output_dir}")


def _run_transcribe(args: argparse.Namespace) -> None:
    from .inference import Transcriber

    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"No such audio file: {', '.join(missing)}")
    for result in Transcriber(args.model, decoding=_decoding_options(args)).transcribe_batch(args.files):
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            print(f"{result['file']}\t{result['text']}")


def _run_compare(args: argparse.Namespace) -> None:
    from .evaluation import compare_files

    print(compare_files(args.baseline, args.candidate))


def _run_lm(args: argparse.Namespace) -> None:
    if args.lm_command == "tune":
        _run_lm_tune(args)
        return
    from .decoding.lm import ARPA_NAME, build_lm

    info = build_lm(args.text, args.output, args.order, args.tone_placement, args.exclude, args.splits)
    print(
        f"{info['order']}-gram syllable LM from {info['sentences']} sentences ({info['tokens']} syllables, "
        f"{info['excluded_sentences']} excluded); n-grams per order: {info['ngrams']}"
    )
    print(f"Language model written: {Path(args.output) / ARPA_NAME}")


def _run_lm_tune(args: argparse.Namespace) -> None:
    from .decoding.lm import TUNED_NAME
    from .evaluation.lm_tune import tune_lm_weights
    from .evaluation.report import percent

    result = tune_lm_weights(
        args.model,
        args.dataset,
        args.lm,
        args.split,
        args.beam_width,
        args.lm_weights,
        args.word_scores,
        args.metric,
        args.limit,
    )
    setting = result["tuned_on"]
    print(f"{setting['split']} split, {setting['utterances']} utterances, beam {setting['beam_width']}")
    print(f"{'lm weight':>9}  {'word score':>10}  {'WER':>7}  {'CER':>7}")
    for point in result["grid"]:
        wer, cer = percent(point["wer"]), percent(point["cer"])
        print(f"{point['lm_weight']:>9}  {point['word_score']:>10}  {wer:>7}  {cer:>7}")
    greedy, best = result["greedy"], result["best"]
    print(
        f"Best: lm weight {result['lm_weight']}, word score {result['word_score']}: WER {percent(best['wer'])}, "
        f"CER {percent(best['cer'])} (greedy: WER {percent(greedy['wer'])}, CER {percent(greedy['cer'])})"
    )
    for name in result["on_edge"]:
        print(f"Note: the best {name.replace('_', ' ')} is at an end of the grid; try values beyond it.")
    print(f"Stored in {Path(args.lm) / TUNED_NAME}")


def _run_push(args: argparse.Namespace) -> None:
    from .hub import push_model

    commit = push_model(
        args.model,
        args.repo_id,
        private=args.private,
        revision=args.revision,
        license=args.license,
        token=args.token,
        commit_message=args.commit_message,
    )
    print(f"Pushed {args.model} to {args.repo_id} ({args.revision or 'main'}): {commit.commit_url}")


def _run_export(args: argparse.Namespace) -> None:
    from .export import export_model, format_export_report

    result = export_model(
        args.model,
        args.output,
        optimize=args.optimize,
        quantize=args.quantize,
        dataset=args.dataset,
        split=args.split,
        limit=args.limit,
    )
    print(format_export_report(result.report))
    print(f"Export written to {result.output_dir} (report: export_report.json)")


def _serve_settings(args: argparse.Namespace) -> ServeSettings:
    """The server's settings from ``ai2text serve``'s arguments (the API key from a file or the environment)."""
    from .serving import AccessSettings, AudioLimits, BatchSettings, ServeSettings
    from .serving.guards import read_api_key

    try:
        api_key = read_api_key(args.api_key_file)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    return ServeSettings(
        models_dir=Path(args.models_dir),
        audio=AudioLimits(
            max_upload_mb=args.max_upload_mb,
            max_seconds=args.max_audio_seconds,
            max_channels=args.max_channels,
            max_sample_rate=args.max_sample_rate,
            max_decoded_mb=args.max_decoded_mb,
        ),
        access=AccessSettings(
            api_key=api_key,
            model_management=args.allow_model_management,
            allowed_hosts=(*args.allowed_host, args.host),
            cors_origins=tuple(args.cors_origin),
        ),
        max_beam_width=args.max_beam_width,
        decode_workers=args.decode_workers,
        batching=BatchSettings(args.batch_size, args.batch_wait_ms / 1000, args.max_queue),
        device=args.device,
    )


def _run_serve(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from .serving import create_app
    except ModuleNotFoundError as error:
        message = f"error: ai2text serve needs the serve extra ({error}): pip install 'ai2text-hf[serve]'"
        raise SystemExit(message) from error
    settings = _serve_settings(args)
    if settings.access.model_management and not settings.access.api_key:
        print(
            "warning: --allow-model-management without an API key: anyone who can reach the server can load and "
            "unload models (set --api-key-file or $AI2TEXT_API_KEY).",
            file=sys.stderr,
        )
    uvicorn.run(create_app(args.model, settings), host=args.host, port=args.port, log_level=args.log_level)


def _run_average(args: argparse.Namespace) -> None:
    from .training.average import average_checkpoints, last_checkpoints

    checkpoints = args.checkpoints or last_checkpoints(args.run, args.last)
    output = average_checkpoints(checkpoints, args.output)
    print(f"Averaged {len(checkpoints)} checkpoints into {output}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("train", "tune"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command in ("train", "tune"):
            {"train": _run_train, "tune": _run_tune}[args.command](args, extra)
        else:
            {
                "synth": _run_synth,
                "import": _run_import,
                "prepare": _run_prepare,
                "stats": _run_stats,
                "average": _run_average,
                "doctor": _run_doctor,
                "evaluate": _run_evaluate,
                "transcribe": _run_transcribe,
                "compare": _run_compare,
                "lm": _run_lm,
                "serve": _run_serve,
                "push": _run_push,
                "export": _run_export,
            }[args.command](args)
    except (OSError, ValueError) as error:  # OSError: a missing file, a full disk, a refused connection
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
