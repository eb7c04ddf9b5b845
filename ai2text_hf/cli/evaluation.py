"""``ai2text evaluate``, ``compare`` and ``lm``: scoring models and building their language models."""

from __future__ import annotations

import argparse
from pathlib import Path

from .decoding import add_decoding_options, decoding_options


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    _add_evaluate(sub)
    _add_compare(sub)
    _add_lm(sub)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="Score a model on a dataset split (WER, CER, tone errors, RTF, per speaker).",
        description="Decode a split of a prepared dataset, print the report and write eval_results.json and "
        "predictions.csv (and report.html with --html) into the run folder, never into the model folder. "
        "WER here counts Vietnamese syllables (space-separated words).",
    )
    p.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    p.add_argument("--dataset", required=True, help="Prepared dataset folder.")
    p.add_argument(
        "--split",
        default="test",
        help="Split to score: train, validation or test (default test; val names validation too).",
    )
    p.add_argument(
        "--output",
        help="Where to write results (default runs/<name>/eval/<split>/, with -beam<width> and -lm added for beam "
        "search and an LM).",
    )
    p.add_argument("--limit", type=int, help="Score only the first N utterances.")
    p.add_argument("--html", action="store_true", help="Also write report.html: plots and the worst utterances.")
    add_decoding_options(p)
    p.set_defaults(handler=_run_evaluate)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="Print two evaluations side by side (compare with a baseline).",
        description="Show two eval_results.json files (or their folders) side by side, B against A, with the "
        "change of every metric; warns when they scored different data.",
    )
    p.add_argument("baseline", help="eval_results.json (or its folder) of the baseline, A.")
    p.add_argument("candidate", help="eval_results.json (or its folder) to compare with it, B.")
    p.set_defaults(handler=_run_compare)


def _add_lm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lm",
        help="Build n-gram language models for beam search.",
        description="Syllable n-gram language models with interpolated modified Kneser-Ney smoothing, written as "
        "ARPA (read by the decoder's KenLM). Built or tuned for a model, the LM is stored in the model folder "
        "(language_model/), which evaluate, transcribe, serve, export, push and pipeline() then use by default.",
    )
    actions = p.add_subparsers(dest="lm_command", required=True, metavar="ACTION")
    b = actions.add_parser(
        "build",
        help="Build a syllable n-gram LM from text files.",
        description="Normalise the text like transcripts and estimate a syllable n-gram LM; writes lm.arpa "
        "and lm.json into --model's language_model/ (recording the model's vocabulary, so the LM is refused with "
        "another; the folder then registers the pipeline that decodes with it) or into --output.",
    )
    b.add_argument(
        "--text",
        nargs="+",
        required=True,
        help="Text files: one sentence per line, a TSV (first column) or a metadata CSV (transcript column).",
    )
    where = b.add_mutually_exclusive_group(required=True)
    where.add_argument("--model", help="Model folder to build the LM for and store it in (<model>/language_model).")
    where.add_argument("--output", help="Folder to write lm.arpa and lm.json into (a model's language_model/ too).")
    b.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace the LM a model folder already holds (and drop the weights `lm tune` found for it).",
    )
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
        help="Tone placement of the model the LM is for (default: the model's, else classic).",
    )
    b.add_argument(
        "--binary",
        choices=["auto", "yes", "no"],
        default="auto",
        help="Also write the KenLM binary lm.bin (loads in milliseconds; what the decoder and push then use): auto "
        "when build_binary is found (ai2text lm install-kenlm compiles it), yes to require it, no for ARPA only.",
    )
    b.set_defaults(handler=_run_lm_build)
    k = actions.add_parser(
        "install-kenlm",
        help="Compile KenLM's build_binary (for binary LMs) from its PyPI source.",
        description="Fetch the kenlm source with pip and compile its build_binary tool with the system's C++ "
        "compiler (about a minute on 2 cores); `lm build` then also writes lm.bin.",
    )
    k.add_argument("--output", help="Where to put the tool (default: ~/.cache/ai2text-hf/kenlm/build_binary).")
    k.set_defaults(handler=_run_lm_install_kenlm)
    t = actions.add_parser(
        "tune",
        help="Find the LM weight and word score for a model on a held-out split.",
        description="Run the model once over --split (validation by default; tuning on test would fit the weights to "
        "the score you report), decode it with beam search at every point of the --lm-weights x --word-scores "
        "grid, print the grid and store the LM with the best pair (decoding.json) in the model folder's "
        "language_model/. Evaluate, transcribe, serve and pipeline() then decode with it by default, at those "
        "weights unless --lm-weight/--word-score are given.",
    )
    t.add_argument("--model", required=True, help="Model folder, e.g. runs/demo/model.")
    t.add_argument("--dataset", required=True, help="Prepared dataset folder.")
    t.add_argument(
        "--lm",
        help="LM folder from `ai2text lm build` to tune and store in the model (default: the model's own; a model "
        "that has one keeps it).",
    )
    t.add_argument("--split", default="validation", help="Held-out split to tune on (default validation).")
    t.add_argument("--beam-width", type=int, default=50, help="Beam width to tune for (default 50).")
    t.add_argument("--lm-weights", type=float, nargs="+", help="LM weights to try (default 0.5 to 1.5).")
    t.add_argument("--word-scores", type=float, nargs="+", help="Word scores to try (default 1.5 to 9).")
    t.add_argument("--metric", choices=["cer", "wer"], default="cer", help="What to minimise (default cer).")
    t.add_argument("--limit", type=int, help="Use only the first N utterances of the split.")
    t.set_defaults(handler=_run_lm_tune)


def _run_evaluate(args: argparse.Namespace) -> None:
    from ..evaluation import evaluate_split, format_report

    result = evaluate_split(
        args.model,
        args.dataset,
        args.split,
        args.output,
        limit=args.limit,
        decoding=decoding_options(args),
        html=args.html,
    )
    print(format_report(result.metrics))
    print(f"\nResults written to {result.output_dir}")


def _run_compare(args: argparse.Namespace) -> None:
    from ..evaluation import compare_files

    print(compare_files(args.baseline, args.candidate))


def _run_lm_build(args: argparse.Namespace) -> None:
    from ..decoding.lm import (
        ARPA_NAME,
        TUNED_NAME,
        build_lm,
        is_model_lm_folder,
        model_fingerprint,
        model_lm_folder,
        register_lm_pipeline,
    )

    output = model_lm_folder(args.model) if args.model else Path(args.output)
    model = output.parent if is_model_lm_folder(output) else None
    if args.model and model is None:
        raise FileNotFoundError(f"{args.model} is not a model folder (no config.json): point --model at one.")
    if model and (output / ARPA_NAME).exists() and not args.overwrite:
        raise FileExistsError(f"{model} already holds a language model ({output}): pass --overwrite to replace it.")
    built_for = model_fingerprint(model) if model else None
    tone_placement = args.tone_placement or (built_for or {}).get("tone_placement") or "classic"
    if built_for and built_for["tone_placement"] not in (None, tone_placement):
        raise ValueError(
            f"--tone-placement {tone_placement}, but {model} spells with {built_for['tone_placement']} tone "
            "placement: leave --tone-placement out to use the model's."
        )
    info = build_lm(args.text, output, args.order, tone_placement, args.exclude, args.splits, built_for, args.binary)
    if model:
        (output / TUNED_NAME).unlink(missing_ok=True)  # weights tuned for the LM just replaced
        register_lm_pipeline(model)
    print(
        f"{info['order']}-gram syllable LM from {info['sentences']} sentences ({info['tokens']} syllables, "
        f"{info['excluded_sentences']} excluded); n-grams per order: {info['ngrams']}"
    )
    print(
        f"Language model written: {output / ARPA_NAME}"
        + (" (and its KenLM binary lm.bin)" if info["kenlm_binary"] else "")
    )
    if model:
        print(f"Stored in the model folder: decoding with {model} uses it by default (tune it: ai2text lm tune).")


def _run_lm_install_kenlm(args: argparse.Namespace) -> None:
    from ..decoding.kenlm_binary import install_build_binary

    print(f"KenLM's build_binary: {install_build_binary(args.output)}")


def _run_lm_tune(args: argparse.Namespace) -> None:
    from ..evaluation.lm_tune import tune_lm_weights
    from ..evaluation.report import percent

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
    print(f"Stored with the LM in {result['stored_in']}")
