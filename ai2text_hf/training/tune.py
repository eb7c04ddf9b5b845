"""Hyperparameter search (``ai2text tune``): Optuna through ``Trainer.hyperparameter_search``.

The search space is the recipe's ``tune.search_space``, keyed by recipe keys::

    tune:
      n_trials: 20
      search_space:
        learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
        dropout: {type: float, low: 0.0, high: 0.3}
        d_model: {type: categorical, choices: [144, 176, 256]}

Keys that are TrainingArguments fields (``learning_rate``, ``grad_clip`` → ``max_grad_norm``, ...) are set by
the Trainer for each trial; the others (model size, dropout, ``max_batch_seconds``) go into the trial's recipe,
from which ``model_init`` builds the model and the sampler its batches. Each trial trains and is scored by the
recipe's ``metric_for_best_model`` on the validation split; the best trial's recipe is written as a complete recipe
(``runs/<name>/best-recipe.yaml``) that ``ai2text train --recipe`` takes as it is.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from .preflight import check_paths
from .recipe import RECIPE_TO_ARGUMENTS, Recipe, RecipeError, canonical_key, load_recipe, save_recipe
from .trainer import _setup_logging, build_model, build_trainer, run_paths
from .training_data import train_sampler

logger = logging.getLogger("ai2text_hf.training")

_ARGUMENT_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments)}
_KINDS = ("float", "int", "categorical")


@dataclass
class TuneResult:
    best_params: dict[str, Any]
    best_value: float
    recipe_path: Path  # the best trial's complete recipe
    trials_path: Path  # every trial: number, state, params, value


def check_search_space(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """The search space, with each key a recipe key and each range well-formed."""
    space = recipe.tune.search_space
    if not space:
        raise RecipeError(
            "tune.search_space is empty: give the recipe a 'tune:' section with search_space entries such as "
            "learning_rate: {type: float, low: 1.0e-4, high: 3.0e-3, log: true} (see ai2text_hf/training/tune.py)."
        )
    for key, spec in space.items():
        kind = spec.get("type", "float") if isinstance(spec, dict) else None
        if kind not in _KINDS:
            raise RecipeError(f"tune.search_space.{key}: give a mapping with type float, int or categorical")
        if kind == "categorical" and not spec.get("choices"):
            raise RecipeError(f"tune.search_space.{key}: a categorical entry needs a list of choices")
        if kind != "categorical" and not ("low" in spec and "high" in spec and spec["low"] < spec["high"]):
            raise RecipeError(f"tune.search_space.{key}: a {kind} entry needs low < high")
        probe = spec["choices"][0] if kind == "categorical" else spec["low"]
        with_override(recipe, {key: probe})  # names an unknown key and its closest valid one
    return space


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One trial's values. Optuna returns the same value when a trial asks for a name twice, so
    ``model_init`` and ``hp_space`` can both call this and agree."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        kind = spec.get("type", "float")
        if kind == "categorical":
            values[key] = trial.suggest_categorical(key, spec["choices"])
        elif kind == "int":
            values[key] = trial.suggest_int(key, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            values[key] = trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False))
    return values


def with_override(recipe: Recipe, values: dict[str, Any]) -> Recipe:
    """``recipe`` with ``values`` (recipe keys, ``section.key`` or TrainingArguments fields) set, checked."""
    return load_recipe(None, {**recipe.to_dict(), **{canonical_key(key): value for key, value in values.items()}})


def argument_values(values: dict[str, Any]) -> dict[str, Any]:
    """The trial values the Trainer sets on its TrainingArguments, under their TrainingArguments names."""
    named = {RECIPE_TO_ARGUMENTS.get(key, key): value for key, value in values.items()}
    return {name: value for name, value in named.items() if name in _ARGUMENT_FIELDS}


def tune(
    recipe: Recipe,
    dataset_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    n_trials: int | None = None,
) -> TuneResult:
    """Search ``recipe.tune.search_space`` with Optuna; write ``best-recipe.yaml`` and ``trials.json``."""
    space = check_search_space(recipe)
    dataset, run_dir = run_paths(recipe, dataset_dir, output_dir, "runs/tune")
    check_paths(dataset, run_dir)
    handler = _setup_logging(run_dir / "logs")
    try:
        return _search(recipe, space, dataset, run_dir, n_trials or recipe.tune.n_trials)
    finally:
        logging.getLogger("ai2text_hf").removeHandler(handler)
        logging.getLogger("transformers").removeHandler(handler)
        handler.close()


def _search(recipe: Recipe, space: dict, dataset: Path, run_dir: Path, n_trials: int) -> TuneResult:
    import optuna

    trainer, _ = build_trainer(recipe, dataset, run_dir)
    trainer.record_run(run_dir)
    tokenizer = trainer.processing_class.tokenizer

    def model_init(trial):
        # Called by the Trainer before each trial's training: the trial's batches follow its recipe too.
        trainer.recipe = recipe if trial is None else with_override(recipe, suggest(trial, space))
        trainer.train_sampler = train_sampler(trainer.recipe, trainer.train_dataset)
        return build_model(trainer.recipe, tokenizer)

    trainer.model_init = model_init
    metric = f"eval_{recipe.metric_for_best_model}"
    storage = f"sqlite:///{(run_dir / 'optuna.db').absolute()}"
    logger.info("Hyperparameter search: %d trials over %s, %s %s.", n_trials, ", ".join(space), recipe.tune.direction,
                metric)  # fmt: skip
    best = trainer.hyperparameter_search(
        hp_space=lambda trial: argument_values(suggest(trial, space)),
        compute_objective=lambda metrics: metrics[metric],
        n_trials=n_trials,
        direction=recipe.tune.direction,
        backend="optuna",
        sampler=optuna.samplers.TPESampler(seed=recipe.seed),
        storage=storage,
        study_name=run_dir.name,
        load_if_exists=True,
    )
    study = optuna.load_study(study_name=run_dir.name, storage=storage)
    trials = [
        {"number": t.number, "state": t.state.name, "params": t.params, "value": t.value} for t in study.trials
    ]
    trials_path = run_dir / "trials.json"
    trials_path.write_text(json.dumps(trials, indent=2) + "\n", encoding="utf-8")
    best_recipe = with_override(recipe, {**best.hyperparameters, "dataset": str(dataset)})
    recipe_path = run_dir / "best-recipe.yaml"
    save_recipe(best_recipe, recipe_path)
    logger.info(
        "Best trial %s: %s = %.4f with %s. Recipe written: %s (train it with `ai2text train --recipe %s`).",
        best.run_id,
        metric,
        best.objective,
        best.hyperparameters,
        recipe_path,
        recipe_path,
    )
    return TuneResult(best.hyperparameters, float(best.objective), recipe_path, trials_path)
