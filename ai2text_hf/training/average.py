"""Checkpoint averaging (``ai2text average``): the mean of several checkpoints' weights, as a complete model
folder. Averaging the last few checkpoints of a run usually gives a slightly better and steadier model than
any one of them (the icefall / NeMo habit)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCTC, AutoProcessor

from ..inference import require_model_folder
from .checkpoints import complete_checkpoints, ordinary_file_modes

logger = logging.getLogger("ai2text_hf.training")


def last_checkpoints(run_dir: str | Path, count: int) -> list[Path]:
    """The ``count`` newest complete checkpoints of a run folder (``runs/<name>``)."""
    if count < 1:
        raise ValueError(f"--last must be at least 1, got {count}")
    found = complete_checkpoints(Path(run_dir) / "checkpoints")
    if len(found) < count:
        raise ValueError(
            f"{run_dir}/checkpoints has {len(found)} complete checkpoint(s), fewer than --last {count}: "
            "lower --last, or keep more with save_total_limit / save_every when training."
        )
    return found[-count:]


def average_checkpoints(checkpoints: Sequence[str | Path], output: str | Path) -> Path:
    """Average the weights of ``checkpoints`` (same architecture) into ``output``, with config and processor.

    Floating-point tensors are averaged in float64; integer buffers are taken from the last checkpoint.
    """
    if not checkpoints:
        raise ValueError("No checkpoints to average.")
    total: dict[str, torch.Tensor] = {}
    model = None
    for checkpoint in checkpoints:
        require_model_folder(checkpoint, "--checkpoints")
        model = AutoModelForCTC.from_pretrained(str(checkpoint))
        state = model.state_dict()
        if total and set(state) != set(total):
            raise ValueError(f"{checkpoint} has other weights than {checkpoints[0]}: average checkpoints of one run.")
        for name, tensor in state.items():
            if name in total and tensor.shape != total[name].shape:
                raise ValueError(
                    f"{checkpoint}: {name} has shape {tuple(tensor.shape)}, {tuple(total[name].shape)} in "
                    f"{checkpoints[0]}: average checkpoints of one run."
                )
            if tensor.is_floating_point():
                total[name] = total.get(name, 0) + tensor.double()
            else:
                total[name] = tensor
    assert model is not None
    state = model.state_dict()
    averaged = {
        name: (tensor / len(checkpoints)).to(state[name].dtype) if state[name].is_floating_point() else tensor
        for name, tensor in total.items()
    }
    model.load_state_dict(averaged)
    output = Path(output)
    model.save_pretrained(str(output))
    AutoProcessor.from_pretrained(str(checkpoints[-1])).save_pretrained(str(output))
    ordinary_file_modes(output)
    logger.info("Averaged %d checkpoints into %s", len(checkpoints), output)
    return output
