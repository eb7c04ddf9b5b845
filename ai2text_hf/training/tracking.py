"""Where a run's hyperparameters and metrics go besides the log: the run folder, TensorBoard (always) and
W&B (when enabled).

The Trainer's own TensorBoard callback writes the metrics and the TrainingArguments as text; this adds the
recipe — as YAML text and in TensorBoard's HParams tab, so runs can be compared by any key.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import yaml
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from transformers import TrainerCallback, TrainingArguments

from .recipe import Recipe, RecipeError, Wandb

#: Metrics the HParams tab shows next to the hyperparameters (the scalar tags the Trainer writes).
HPARAM_METRICS = ("eval/cer", "eval/wer", "eval/loss")


def report_to(wandb: Wandb) -> list[str]:
    """``report_to`` for TrainingArguments: W&B when the recipe enables it (project and entity go to the
    WANDB_PROJECT / WANDB_ENTITY variables the Trainer's W&B callback reads); TensorBoard is wired separately."""
    if not wandb.enabled:
        return []
    if importlib.util.find_spec("wandb") is None:
        raise RecipeError(
            "wandb.enabled is true but wandb is not installed: `pip install wandb` and `wandb login`, "
            "or set --wandb.enabled false."
        )
    os.environ["WANDB_PROJECT"] = wandb.project
    if wandb.entity:
        os.environ["WANDB_ENTITY"] = wandb.entity
    return ["wandb"]


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested recipe values as ``section.key`` scalars, the types TensorBoard's HParams accept."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:  # None, lists
            flat[name] = str(value)
    return flat


def save_hyperparameters(path: Path, resolved: dict[str, Any], args: TrainingArguments) -> None:
    """What the recipe resolved to on this machine (device, precision, warmup steps, ...) and every
    TrainingArguments value, next to recipe.yaml in the run folder."""
    if args.should_save:
        payload = {"resolved": resolved, "training_arguments": json.loads(args.to_json_string())}
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


class HyperparametersToTensorBoard(TrainerCallback):
    """At the start of training, writes the resolved recipe (and what was resolved from it) to TensorBoard."""

    def __init__(self, writer: SummaryWriter, recipe: Recipe, resolved: dict[str, Any]):
        self.writer = writer
        self.recipe = recipe
        self.resolved = resolved  # device, precision, warmup steps, processes, ...

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        recipe = self.recipe.to_dict()
        text = yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)
        self.writer.add_text("recipe", f"```yaml\n{text}```")
        values = {**flatten(recipe), **flatten(self.resolved, "resolved.")}
        for summary in hparams(values, dict.fromkeys(HPARAM_METRICS, 0.0)):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()
