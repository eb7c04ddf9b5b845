"""The state every part of our trainer reads, owned by the trainer from its construction on."""

from __future__ import annotations

from transformers import Trainer

from ..data.sampler import DurationBatchSampler
from .recipe import Recipe


class RecipeTrainer(Trainer):
    """``Trainer`` with the run's recipe and its train sampler (``None`` for a streamed train split).

    The mixins (checkpoints, guards, EMA) take their settings from ``recipe``; the hyperparameter search
    replaces both per trial.
    """

    def __init__(self, *args, recipe: Recipe, train_sampler: DurationBatchSampler | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.recipe = recipe
        self.train_sampler = train_sampler
