"""From a recipe to ``TrainingArguments``: the keys that map one to one, the device and the precision.

The device and precision are resolved against what the machine has and what ``accelerate launch`` asked for:
the launcher's ``--mixed_precision`` (environment ``ACCELERATE_MIXED_PRECISION``) wins over the recipe's
``use_amp``/``amp_dtype``, and every such decision is reported as a note, so nothing changes silently.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .recipe import RECIPE_TO_ARGUMENTS, Recipe, RecipeError

LAUNCHER_PRECISION_ENV = "ACCELERATE_MIXED_PRECISION"
LAUNCHER_CPU_ENV = "ACCELERATE_USE_CPU"


def recipe_arguments(recipe: Recipe) -> dict[str, Any]:
    """The TrainingArguments fields a recipe sets directly (``grad_clip`` → ``max_grad_norm``, ...)."""
    return {argument: getattr(recipe, key) for key, argument in RECIPE_TO_ARGUMENTS.items()}


@dataclass
class Hardware:
    """Where a run trains (``cuda``, ``mps`` or ``cpu``) and in which precision (``no``, ``fp16``, ``bf16``)."""

    device: str
    precision: str
    notes: list[str] = field(default_factory=list)  # decisions the user should read (AMP dropped, launcher won)

    @property
    def amp(self) -> bool:
        return self.precision != "no"

    def training_arguments(self, recipe: Recipe) -> dict[str, Any]:
        return {
            "use_cpu": self.device == "cpu",
            "fp16": self.precision == "fp16",
            "bf16": self.precision == "bf16",
            "dataloader_num_workers": recipe.num_workers,
            # Pinned memory only speeds up copies to a CUDA device; elsewhere torch warns and ignores it.
            "dataloader_pin_memory": recipe.pin_memory and self.device == "cuda",
        }


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16, or AMX on Xeons since Sapphire Rapids).

    There, bf16 autocast runs the matrix products faster than float32 (docs/results.md); elsewhere oneDNN
    emulates bf16 and it is slower than float32.
    """
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def _available_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_hardware(recipe: Recipe, environ: Mapping[str, str] | None = None) -> Hardware:
    """The device and precision a run uses: recipe > machine defaults, but the launcher > the recipe."""
    environ = os.environ if environ is None else environ
    notes: list[str] = []
    available = _available_device()
    launcher_cpu = environ.get(LAUNCHER_CPU_ENV, "false").lower() in ("1", "true", "yes")
    if launcher_cpu:
        if recipe.device not in ("auto", "cpu"):
            notes.append(f"accelerate launch asks for the CPU (use_cpu): the recipe's device={recipe.device} yields.")
        device = "cpu"
    elif recipe.device == "auto":
        device = available
    elif recipe.device != "cpu" and recipe.device != available:
        raise RecipeError(
            f"device={recipe.device}, but PyTorch sees no {recipe.device.upper()} device on this machine "
            f"(it has: {available}). Set --device auto (or cpu), or install a PyTorch build for your accelerator."
        )
    else:
        device = recipe.device

    wanted = recipe.amp_dtype if recipe.use_amp else "no"
    launcher = environ.get(LAUNCHER_PRECISION_ENV)
    if launcher is not None:
        if launcher != wanted:
            notes.append(
                f"accelerate launch sets mixed precision '{launcher}' but the recipe asks for '{wanted}' "
                f"(use_amp={recipe.use_amp}, amp_dtype={recipe.amp_dtype}): the launcher wins, "
                f"training in '{launcher}'."
            )
        return Hardware(device, launcher, notes)
    if wanted == "no":
        return Hardware(device, "no", notes)
    if device == "cpu" and wanted == "bf16":
        if cpu_has_bf16():
            return Hardware(device, "bf16", notes)
        notes.append(
            "amp_dtype=bf16 on a CPU without bfloat16 instructions (AVX512-BF16 or AMX): bf16 would be emulated and "
            "slower than float32, so this run trains in float32."
        )
        return Hardware(device, "no", notes)
    if device != "cuda":
        notes.append(
            f"use_amp is set but training runs on the {device.upper()}: {wanted} mixed precision applies on CUDA GPUs "
            "only (and bf16 on CPUs with AVX512-BF16 or AMX), so this run trains in float32."
        )
        return Hardware(device, "no", notes)
    if wanted == "bf16" and not torch.cuda.is_bf16_supported():
        notes.append("amp_dtype=bf16 but this GPU has no bfloat16 support (it needs Ampere or newer): using fp16.")
        return Hardware(device, "fp16", notes)
    return Hardware(device, wanted, notes)


def num_processes(environ: Mapping[str, str] | None = None) -> int:
    """Processes training together, as torchrun and accelerate launch announce them (1 without a launcher)."""
    return int((os.environ if environ is None else environ).get("WORLD_SIZE", 1))


def process_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank among those training together (0 without a launcher); rank 0 reports and writes."""
    return int((os.environ if environ is None else environ).get("RANK", 0))


def optimizer_steps_per_epoch(num_batches: int, grad_accum_steps: int, num_processes: int) -> int:
    """Optimizer steps in one epoch of ``num_batches`` global batches shared by ``num_processes``."""
    return max(1, math.ceil(num_batches / (num_processes * grad_accum_steps)))


def warmup_steps(recipe: Recipe, steps_per_epoch: int | None) -> float:
    """``warmup_epochs`` (the old system's key) in optimizer steps when set, else ``warmup_steps`` as it is
    (a float below 1 is a share of all steps, which the Trainer resolves). ``None``: epochs of unknown length."""
    if recipe.warmup_epochs is None:
        return recipe.warmup_steps
    if steps_per_epoch is None:
        raise RecipeError(
            "warmup_epochs needs epochs of known length, and a streamed train split has none: "
            "set --warmup_steps (a step count, or a share of max_steps below 1) instead."
        )
    return int(round(recipe.warmup_epochs * steps_per_epoch))
