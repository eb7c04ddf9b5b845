"""LoRA fine-tuning with peft: low-rank adapters on the attention projections, the output layer trained in full.

A run with ``lora_rank`` set writes, besides the usual folders:

    runs/<name>/adapter/   adapter_config.json (peft; ``base_model_name_or_path`` is the run's ``init_from``),
                           adapter_model.safetensors (the LoRA weights and the whole output layer) and the
                           run's tokenizer and feature extractor files
    runs/<name>/model/     the base with the adapters merged in: an ordinary model folder, so evaluate, export
                           and push treat it like any other

Checkpoints hold the adapter only (the Trainer saves a peft model that way) and resume from it. The adapter
folder loads like a model folder (``ai2text_hf.inference.load_model_folder``): its base, the output layer sized to
the adapter's tokenizer, the adapter merged in.
"""

from __future__ import annotations

import functools
import logging

from torch import nn
from transformers import PreTrainedModel

from .recipe import Recipe

logger = logging.getLogger("ai2text_hf.training")

#: The attention projections LoRA adapts by default, per model family (matched by module name, last parts):
#: transformers' Wav2Vec2, HuBERT, WavLM and Data2VecAudio; Wav2Vec2-Conformer and w2v-BERT 2.0; ours.
DEFAULT_TARGETS = (
    ("q_proj", "k_proj", "v_proj", "out_proj"),
    ("linear_q", "linear_k", "linear_v", "linear_out"),
    ("attn.qkv", "attn.out"),
)
#: Trained in full next to the adapters: the output layer is new (or re-learnt) for the run's vocabulary.
HEAD = "lm_head"


def default_targets(model: nn.Module) -> list[str]:
    """The attention projections of ``model``'s family (the first of :data:`DEFAULT_TARGETS` it has)."""
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    for family in DEFAULT_TARGETS:
        if all(any(name == target or name.endswith(f".{target}") for name in linear) for target in family):
            return list(family)
    names = ", ".join(sorted({name.rsplit(".", 1)[-1] for name in linear}))
    raise ValueError(
        f"lora_target_modules: no default for {type(model).__name__}; name its attention projections, e.g. "
        f"--lora_target_modules '[q_proj, v_proj]' (its linear layers: {names})."
    )


def with_lora(model: PreTrainedModel, recipe: Recipe) -> nn.Module:
    """``model`` with LoRA adapters on ``lora_target_modules``; every other weight frozen but the output layer."""
    from peft import LoraConfig, get_peft_model

    targets = recipe.lora_target_modules or default_targets(model)
    config = LoraConfig(
        r=recipe.lora_rank,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=targets,
        modules_to_save=[HEAD],
    )
    try:
        adapted = get_peft_model(model, config)
    except ValueError as error:  # peft names the targets it did not find
        raise ValueError(f"lora_target_modules {targets}: {error}") from error
    # The output layer is saved whole (modules_to_save); peft's "auto" would also look for input embeddings after
    # a vocabulary change, which speech models lack (NotImplementedError when the Trainer saves).
    adapted.save_pretrained = functools.partial(adapted.save_pretrained, save_embedding_layers=False)
    trainable = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    total = sum(p.numel() for p in adapted.parameters())
    logger.info(
        "LoRA (rank %d, alpha %g) on %s: %.2f M of %.2f M parameters train (adapters and %s).",
        recipe.lora_rank, recipe.lora_alpha, ", ".join(targets), trainable / 1e6, total / 1e6, HEAD,
    )  # fmt: skip
    return adapted


def is_lora(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")
