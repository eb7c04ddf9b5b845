"""Exponential moving average (EMA) of the weights: updated after every optimizer step, evaluated beside
the trained weights (``eval_ema_*`` metrics), kept in every checkpoint and saved as ``runs/<name>/model-ema/``.

The averaging itself is PyTorch's (``torch.optim.swa_utils.AveragedModel`` with an EMA update).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import PreTrainedModel, TrainerCallback

from .checkpoints import AtomicCheckpointsMixin

EMA_STATE_NAME = "ema.pt"


class WeightEMA:
    """A shadow copy of ``model`` whose weights (and buffers) follow ``decay · ema + (1 - decay) · weights``."""

    def __init__(self, model: PreTrainedModel, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema.decay must be between 0 and 1 (e.g. 0.999), got {decay}")
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.averaged.requires_grad_(False)

    @property
    def model(self) -> PreTrainedModel:
        return self.averaged.module

    def update(self, model: torch.nn.Module) -> None:
        self.averaged.update_parameters(model)

    @contextmanager
    def swapped_into(self, model: torch.nn.Module):
        """Temporarily load the averaged weights into ``model`` (to evaluate them with the same code)."""
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.model.state_dict())
        try:
            yield model
        finally:
            model.load_state_dict(saved)

    def save_state(self, folder: Path) -> None:
        torch.save(self.averaged.state_dict(), folder / EMA_STATE_NAME)

    def load_state(self, folder: str | Path) -> bool:
        path = Path(folder) / EMA_STATE_NAME
        if not path.is_file():
            return False
        self.averaged.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return True


class EmaUpdate(TrainerCallback):
    """Feeds every optimizer step into the EMA."""

    def __init__(self, ema: WeightEMA):
        self.ema = ema

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.ema.update(model)


class EmaEvaluationMixin(AtomicCheckpointsMixin):
    """Mixed into the trainer: each evaluation also scores the EMA weights (``eval_ema_*`` metrics) and each
    checkpoint carries the EMA state. Active when the recipe's ``ema.enabled`` is."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ema = WeightEMA(self.model, self.recipe.ema.decay) if self.recipe.ema.enabled else None
        if self.ema is not None:
            self.add_callback(EmaUpdate(self.ema))

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self.ema is not None and not metric_key_prefix.endswith("_ema"):
            with self.ema.swapped_into(self.model):
                averaged = super().evaluation_loop(
                    dataloader, f"{description} (EMA)", prediction_loss_only, ignore_keys, f"{metric_key_prefix}_ema"
                )
            output.metrics.update(averaged.metrics)
        return output

    def write_checkpoint_extras(self, folder: Path) -> None:
        super().write_checkpoint_extras(folder)
        if self.ema is not None and self.args.should_save:
            self.ema.save_state(folder)
