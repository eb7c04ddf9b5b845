"""The model a run starts from: a fresh Conformer-CTC, one of our model folders, or any ``AutoModelForCTC`` folder.

A foreign CTC model (Wav2Vec2ForCTC, HuBERT, WavLM, ...) is trained as it is, with its own feature extractor
on raw 16 kHz audio (the on-the-fly data path) and our tokenizer: its output layer is replaced when its
vocabulary is not ours. Our own models keep their head only when the run's vocabulary is the one they were
trained with (``reset_head`` replaces it deliberately).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForCTC,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor

from ..configuration_ai2text import AI2TextConfig
from ..feature_extraction_ai2text import AI2TextFeatureExtractor
from ..inference import require_model_folder
from ..modeling_ai2text import AI2TextForCTC
from ..tokenization_ai2text import AI2TextTokenizer
from .lora import with_lora
from .recipe import Recipe

logger = logging.getLogger("ai2text_hf.training")


@dataclass
class InitialModel:
    model: PreTrainedModel
    feature_extractor: SequenceFeatureExtractor
    #: True for our Conformer-CTC (log-mel ``input_features``), False for a foreign model (``input_values``).
    ours: bool


def recipe_feature_extractor(recipe: Recipe) -> AI2TextFeatureExtractor:
    """The log-mel front end the recipe's feature keys describe."""
    return AI2TextFeatureExtractor(
        feature_size=recipe.n_mels,
        pitch=recipe.pitch,
        pitch_norm_window=recipe.pitch_norm_window,
        normalize=recipe.feature_normalize,
        causal_norm_window=recipe.causal_norm_window,
        sampling_rate=recipe.sample_rate,
        n_fft=recipe.n_fft,
        win_length=recipe.n_fft,
        hop_length=recipe.hop_length,
    )


def initial_model(recipe: Recipe, tokenizer: AI2TextTokenizer) -> InitialModel:
    """What ``recipe.init_from`` names (or a fresh model from the recipe), with freezing applied."""
    if not recipe.init_from:
        config = recipe.model_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        return InitialModel(AI2TextForCTC(config), recipe_feature_extractor(recipe), ours=True)
    folder = require_model_folder(recipe.init_from, "init_from")
    config = AutoConfig.from_pretrained(folder)
    _check_overrides(config, recipe.config_overrides, folder)
    ours = isinstance(config, AI2TextConfig)
    if ours:
        model = AI2TextForCTC.from_pretrained(folder, **recipe.config_overrides)
        feature_extractor = AI2TextFeatureExtractor.from_pretrained(folder)
    else:
        model = AutoModelForCTC.from_pretrained(folder, **recipe.config_overrides)
        try:
            feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
        except (OSError, ValueError) as error:
            raise FileNotFoundError(
                f"init_from: {folder} has no feature extractor settings (preprocessor_config.json): save the "
                "checkpoint's feature extractor there too, e.g. Wav2Vec2FeatureExtractor().save_pretrained(folder)."
            ) from error
    logger.info(
        "Fine-tuning %s from %s (%.2f M parameters); the recipe's architecture keys do not apply.",
        type(model).__name__,
        folder,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    _fit_head(model, folder, tokenizer, ours, recipe.reset_head)
    _freeze(model, ours, recipe.freeze_feature_encoder, recipe.freeze_layers)
    if recipe.lora_rank:
        model = with_lora(model, recipe)
    return InitialModel(model, feature_extractor, ours)


def _check_overrides(config: PretrainedConfig, overrides: dict, folder: Path) -> None:
    """``config_overrides`` may only change values the configuration has (a typo would be silently stored)."""
    known = set(config.to_dict())
    for key in overrides:
        if key not in known:
            match = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" Did you mean '{match[0]}'?" if match else ""
            raise ValueError(
                f"config_overrides.{key}: {type(config).__name__} of {folder} has no such value.{hint} "
                "Its values are in its config.json."
            )


def _folder_vocab(folder: Path) -> dict[str, int] | None:
    try:
        return AutoTokenizer.from_pretrained(folder).get_vocab()
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _fit_head(model: PreTrainedModel, folder: Path, tokenizer: AI2TextTokenizer, ours: bool, reset: bool) -> None:
    """Keep the output layer when it speaks the run's vocabulary, else replace it (ours: only when asked)."""
    if _folder_vocab(folder) == tokenizer.get_vocab() and model.config.vocab_size == len(tokenizer):
        return
    if ours and not reset:
        raise ValueError(
            f"init_from: {folder} was trained with another vocabulary ({model.config.vocab_size} tokens) than this "
            f"run's tokenizer ({len(tokenizer)} tokens): "
            "use the same `vocab` setting as that run, or pass --reset_head true to start a new output layer."
        )
    head = getattr(model, "lm_head", None)
    if not isinstance(head, nn.Linear):
        raise ValueError(f"init_from: {type(model).__name__} has no linear `lm_head` to fit to the vocabulary.")
    logger.info(
        "Output layer of %s replaced: %d outputs -> %d (this run's vocabulary), freshly initialised.",
        folder,
        head.out_features,
        len(tokenizer),
    )
    model.lm_head = nn.Linear(head.in_features, len(tokenizer))
    model._init_weights(model.lm_head)
    model.config.vocab_size = len(tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id  # the CTC blank of every HF CTC model


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The encoder's blocks, bottom first: ours, or those of a transformers CTC model (``<base>.encoder.layers``)."""
    ours = isinstance(model, AI2TextForCTC)
    layers = model.layers if ours else getattr(getattr(model.base_model, "encoder", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        name = type(model).__name__
        raise ValueError(f"cannot find the encoder layers of {name} (for freeze_layers or layerwise_lr_decay).")
    return layers


def _freeze(model: PreTrainedModel, ours: bool, feature_encoder: bool, num_layers: int) -> None:
    if feature_encoder:
        if ours:
            model.subsampling.requires_grad_(False)
        elif hasattr(model, "freeze_feature_encoder"):
            model.freeze_feature_encoder()
        else:
            raise ValueError(f"freeze_feature_encoder: {type(model).__name__} has no feature encoder to freeze.")
    if num_layers:
        layers = encoder_layers(model)
        if not 0 < num_layers <= len(layers):
            raise ValueError(f"freeze_layers must be between 0 and {len(layers)} (encoder layers), got {num_layers}")
        for layer in layers[:num_layers]:
            layer.requires_grad_(False)
    if feature_encoder or num_layers:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = model.num_parameters()
        logger.info("Frozen parts: %.2f M of %.2f M parameters still train.", trainable / 1e6, total / 1e6)


def output_frames(initial: InitialModel) -> Callable[[int], int]:
    """CTC output frames the model produces for ``num_samples`` of audio."""
    model, feature_extractor = initial.model, initial.feature_extractor

    def frames(num_samples: int) -> int:
        length = feature_extractor.num_frames(num_samples) if initial.ours else num_samples
        return int(model._get_feat_extract_output_lengths(torch.tensor(length)))

    return frames
