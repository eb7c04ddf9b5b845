"""Learning rates per parameter group for fine-tuning: the output layer's own rate (``head_learning_rate``) and
layer-wise decay (``layerwise_lr_decay``), as pretrained encoders are usually fine-tuned.

With decay ``d`` over ``L`` encoder layers, layer ``i`` (0 at the bottom) learns at ``d^(L-1-i)`` times the recipe's
``learning_rate``; what comes before the first layer (the convolutional feature encoder, the feature projection)
at ``d^L``; what comes after the last (norms, the output layer) at the full rate. The schedule then scales
every group alike.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from transformers import PreTrainedModel

from .initial_model import encoder_layers
from .recipe import Recipe


def learning_rate_scales(recipe: Recipe, model: PreTrainedModel) -> dict[nn.Parameter, float]:
    """Each trainable parameter's factor on ``learning_rate`` (empty when the recipe asks for one rate)."""
    if recipe.head_learning_rate is None and recipe.layerwise_lr_decay is None:
        return {}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under LoRA: the adapted model
    scales: dict[nn.Parameter, float] = {}
    if recipe.layerwise_lr_decay is not None:
        decay, layers = recipe.layerwise_lr_decay, encoder_layers(base)
        depth = {p: i for i, layer in enumerate(layers) for p in layer.parameters()}
        below = True  # parameters are listed in the order their modules were registered: bottom to top
        for parameter in base.parameters():
            if parameter in depth:
                below = False
                scales[parameter] = decay ** (len(layers) - 1 - depth[parameter])
            elif below:
                scales[parameter] = decay ** len(layers)
    if recipe.head_learning_rate is not None:
        for parameter in base.lm_head.parameters():
            scales[parameter] = recipe.head_learning_rate / recipe.learning_rate
    return {p: scale for p, scale in scales.items() if p.requires_grad and scale != 1.0}


def regroup(optimizer: torch.optim.Optimizer, scales: dict[nn.Parameter, float]) -> None:
    """Split each of the optimizer's groups (weight decay or not) by learning-rate factor, before its first step."""
    groups = []
    for group in optimizer.param_groups:
        by_scale: dict[float, list[nn.Parameter]] = defaultdict(list)
        for parameter in group["params"]:
            by_scale[scales.get(parameter, 1.0)].append(parameter)
        groups += [{**group, "params": params, "lr": group["lr"] * scale} for scale, params in by_scale.items()]
    optimizer.param_groups = groups
