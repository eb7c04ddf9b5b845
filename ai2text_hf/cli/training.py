"""``ai2text train``, ``tune`` and ``average``: training runs from a YAML recipe."""

from __future__ import annotations

import argparse

from .compat import add_recipe_compat, explain_multi_gpu


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    _add_train(sub)
    _add_tune(sub)
    _add_average(sub)


def _recipe_keys_help() -> str:
    """Every recipe key with its default, for the --help of train and tune (the defaults live in Recipe)."""
    from ..training.recipe import Recipe

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
    lines.append("  What each key does: docs/training.md#every-recipe-key.")
    return "\n".join(lines)


class _RecipeKeysFormatter(argparse.RawDescriptionHelpFormatter):
    """Ends --help with every recipe key, built only when help is shown: it imports the training stack (torch),
    which every other command (e.g. an up-to-date `ai2text prepare`) must not pay for."""

    def format_help(self) -> str:
        self.add_text(_recipe_keys_help())
        return super().format_help()


def _add_recipe_options(p: argparse.ArgumentParser, *, multi_gpu: bool = False) -> None:
    """The options train and tune share; their other arguments are recipe keys (``--key value``)."""
    p.add_argument(
        "--recipe",
        help="YAML recipe (e.g. recipes/demo-cpu.yaml, recipes/conformer-medium.yaml). Without it, built-in defaults.",
    )
    p.add_argument(
        "--dataset",
        help="Prepared dataset folder (from `ai2text prepare`), or a metadata CSV to stream. Overrides the recipe's.",
    )
    p.add_argument(
        "--output-dir", help="Run folder, e.g. runs/demo (the old system's --checkpoint_dir). Overrides the recipe's."
    )
    add_recipe_compat(p, multi_gpu=multi_gpu)
    p.set_defaults(takes_recipe_overrides=True)


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
    _add_recipe_options(p, multi_gpu=True)
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
    p.set_defaults(handler=_run_train)


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="Search hyperparameters with Optuna (Trainer.hyperparameter_search).",
        description="Train --n-trials models with values drawn from the recipe's tune.search_space (e.g. "
        "learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}; types float, int, categorical) and "
        "score each by metric_for_best_model on the validation split. Writes runs/<name>/best-recipe.yaml (a complete "
        "recipe for `ai2text train --recipe`), trials.json and optuna.db (running again continues the study). "
        "Needs `pip install ai2text-hf[tune]`.",
        formatter_class=_RecipeKeysFormatter,
    )
    _add_recipe_options(p)
    p.add_argument("--n-trials", type=int, help="Trials to run (default: the recipe's tune.n_trials).")
    p.set_defaults(handler=_run_tune)


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
    p.set_defaults(handler=_run_average)


def _run_train(args: argparse.Namespace) -> None:
    from ..training.arguments import process_rank
    from ..training.recipe import load_recipe, parse_overrides
    from ..training.trainer import train

    explain_multi_gpu(args)
    recipe = load_recipe(args.recipe, parse_overrides(args.recipe_overrides))
    result = train(
        recipe, dataset_dir=args.dataset, output_dir=args.output_dir, resume=args.resume, overwrite=args.overwrite
    )
    if process_rank() == 0:  # under torchrun every process gets here
        print(f"Model: {result.model_dir}")


def _run_tune(args: argparse.Namespace) -> None:
    from ..training.recipe import load_recipe, parse_overrides
    from ..training.tune import tune

    result = tune(
        load_recipe(args.recipe, parse_overrides(args.recipe_overrides)), args.dataset, args.output_dir, args.n_trials
    )
    print(f"Best: {result.best_params} ({result.best_value:.4f}). Recipe: {result.recipe_path}")


def _run_average(args: argparse.Namespace) -> None:
    from ..training.average import average_checkpoints, last_checkpoints

    checkpoints = args.checkpoints or last_checkpoints(args.run, args.last)
    output = average_checkpoints(checkpoints, args.output)
    print(f"Averaged {len(checkpoints)} checkpoints into {output}")
