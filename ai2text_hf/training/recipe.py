"""Training recipes: YAML files over one set of defaults, with command-line overrides.

The defaults live here and only here (the :class:`Recipe` dataclass); recipe files in ``recipes/``
are plain data that override them, and ``--key value`` on the command line overrides the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments

from ..configuration_ai2text import AI2TextConfig
from ..data.augment import Augmentation  # the augmentation section: defined beside the augmenter that reads it
from ..feature_extraction_ai2text import CAUSAL_NORM_WINDOW, PITCH_FEATURES, PITCH_NORM_WINDOW
from .schedules import scheduler_names

logger = logging.getLogger("ai2text_hf.training")

_TRAINING_ARGUMENT_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments)}
# Architecture defaults are the model configuration's own, so they are defined once.
_MODEL = AI2TextConfig()


@dataclass
class EarlyStopping:
    enabled: bool = False
    patience: int = 10  # evaluations without improvement of metric_for_best_model
    min_delta: float = 0.0


@dataclass
class Ema:
    """Exponential moving average of the weights, evaluated and saved as ``model-ema/``."""

    enabled: bool = False
    decay: float = 0.999


@dataclass
class Wandb:
    enabled: bool = False
    project: str = "ai2text-hf"
    entity: str | None = None
    run_name: str | None = None


@dataclass
class Tune:
    """Hyperparameter search (``ai2text tune``): Optuna through ``Trainer.hyperparameter_search``."""

    n_trials: int = 10
    direction: str = "minimize"
    # key -> {type: float|int|categorical, low, high, log, choices}
    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)


#: Recipe keys that are TrainingArguments fields under another (or the same) name.
RECIPE_TO_ARGUMENTS = {
    "num_epochs": "num_train_epochs",
    "learning_rate": "learning_rate",
    "weight_decay": "weight_decay",
    "grad_clip": "max_grad_norm",
    "grad_accum_steps": "gradient_accumulation_steps",
    "seed": "seed",
    "logging_steps": "logging_steps",
    "save_total_limit": "save_total_limit",
}
# Recipe keys that are mappings of their own, and other names for our keys: the old system's ones and the
# TrainingArguments fields a recipe key sets. Each is read as our key, so one setting has one value.
_SECTIONS = {"augmentation": Augmentation, "early_stopping": EarlyStopping, "ema": Ema, "wandb": Wandb, "tune": Tune}
_ALIASES = {
    "checkpoint_dir": "output_dir",
    "database_path": "dataset",
    "pretrained_model": "init_from",
    "lr_scheduler_type": "lr_scheduler",
    "dataloader_num_workers": "num_workers",
    "dataloader_pin_memory": "pin_memory",
    **{argument: key for key, argument in RECIPE_TO_ARGUMENTS.items() if argument != key},
}
#: Recipe keys that are free mappings, merged key by key like the sections (``--config_overrides.layerdrop 0.1``).
_MAPPINGS = ("config_overrides",)
#: Keys that set how long a run trains by epochs or steps; given on the command line, they end the recipe
#: file's ``max_train_minutes`` (see :func:`load_recipe`).
_LENGTH_KEYS = ("num_epochs", "max_steps")
# Keys of the old augmentation section, refused with their replacement: each family now has its own probability.
_PER_FAMILY = "one probability per family (noise_prob, gain_prob, pad_prob, tempo_prob, ...; see docs/training.md)"
_RENAMED = {
    "augmentation.types": f"augmentation.types and augmentation.prob were replaced by {_PER_FAMILY}",
    "augmentation.prob": f"augmentation.types and augmentation.prob were replaced by {_PER_FAMILY}",
    "augmentation.volume_db": "augmentation.volume_db is now augmentation.gain_db (with augmentation.gain_prob)",
    "augmentation.shift_ms": "augmentation.shift_ms is now augmentation.pad_seconds (with augmentation.pad_prob)",
    "augmentation.stretch": "augmentation.stretch is now augmentation.tempo (with augmentation.tempo_prob)",
    "augmentation.speed_perturb": "augmentation.speed_perturb is now augmentation.speed, a [low, high] range "
    "(with augmentation.speed_prob)",
}


@dataclass
class Recipe:
    """Every training option, with its default. Field names keep the old system's keys where the idea is the same."""

    # Model architecture (AI2TextConfig)
    d_model: int = _MODEL.d_model
    num_encoder_layers: int = _MODEL.num_encoder_layers
    num_heads: int = _MODEL.num_heads
    d_ff: int = _MODEL.d_ff
    dropout: float = _MODEL.dropout
    attention_dropout: float = _MODEL.attention_dropout
    block_type: str = _MODEL.block_type
    conv_kernel_size: int = _MODEL.conv_kernel_size
    subsampling_channels: int = _MODEL.subsampling_channels
    interctc_layers: list[int] = field(default_factory=lambda: list(_MODEL.interctc_layers))
    interctc_weight: float = _MODEL.interctc_weight
    self_conditioning: bool = _MODEL.self_conditioning
    # Streaming models (docs/streaming.md; recipes/streaming-cpu.yaml sets all of these). A model streams when its
    # front end and convolutions read no future frame and it learnt to attend within chunks:
    causal_subsampling: bool = _MODEL.causal_subsampling  # front end: past input frames only (no lookahead)
    causal_conv: bool = _MODEL.causal_conv  # Conformer convolution module: the kernel's past half only
    dynamic_chunk_training: bool = _MODEL.dynamic_chunk_training  # attend within a random chunk size per batch
    max_chunk_frames: int = _MODEL.max_chunk_frames  # largest chunk drawn, in 40 ms output frames (25: 1 s)
    full_context_prob: float = _MODEL.full_context_prob  # share of batches that attend over the whole utterance
    dynamic_left_chunks: bool = _MODEL.dynamic_left_chunks  # draw the left chunks seen per batch too
    attention_left_chunks: int = _MODEL.attention_left_chunks  # left chunks a stream attends to (-1: all)
    # SpecAugment (training only)
    spec_augment: bool = _MODEL.apply_spec_augment
    num_freq_masks: int = _MODEL.num_freq_masks
    freq_mask_width: int = _MODEL.freq_mask_width
    num_time_masks: int = _MODEL.num_time_masks
    time_mask_max_ratio: float = _MODEL.time_mask_max_ratio
    # Features: must match the prepared dataset's manifest
    sample_rate: int = _MODEL.sample_rate
    n_mels: int = _MODEL.n_mels
    # 3 pitch columns per frame (voicing, log-F0, slope) after the mels, for the tones. Off by default: they halve
    # the demo's test CER but hurt a corpus of minutes (docs/results.md); recipes/demo-cpu.yaml opts in.
    pitch: bool = False
    # Seconds around each frame whose voiced mean the log-F0 is centred on; null: the whole utterance (better
    # on single utterances, worse when a long recording changes speaker; see docs/results.md).
    pitch_norm_window: float | None = PITCH_NORM_WINDOW
    # Mel normalisation: "utterance" (mean and variance of the whole utterance) or "causal" (of the past
    # causal_norm_window seconds up to each frame, which a stream can compute; streaming recipes).
    feature_normalize: str = "utterance"
    causal_norm_window: float = CAUSAL_NORM_WINDOW
    n_fft: int = 400
    hop_length: int = _MODEL.hop_length
    # Tokenizer
    vocab: str = "alphabet"  # "alphabet": the fixed Vietnamese alphabet; "data": characters seen in train
    tone_placement: str = "classic"
    # Optimisation
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    num_epochs: float = 20
    warmup_steps: float = 0.1  # a float < 1 is a share of all steps
    warmup_epochs: float | None = None  # the old system's key; when set it replaces warmup_steps
    lr_scheduler: str = "cosine"  # cosine, linear, onecycle, noam or any transformers scheduler name
    max_batch_seconds: float = 200.0
    batch_size: int | None = None  # optional cap on utterances per batch
    eval_batch_seconds: float = 400.0
    grad_accum_steps: int = 1
    use_amp: bool = False  # CUDA GPUs; bf16 also on CPUs with AVX512-BF16 or AMX (float32 elsewhere, with a note)
    amp_dtype: str = "fp16"  # fp16 or bf16; `accelerate launch --mixed_precision` wins when it disagrees
    device: str = "auto"  # auto, cpu, cuda or mps
    num_workers: int = 0
    pin_memory: bool = False
    seed: int = 42
    max_train_minutes: float | None = None  # wall-clock cap: stop, evaluate and keep the best model
    fit_schedule_to_budget: bool = True  # with max_train_minutes, the LR schedule ends when the budget does
    # Checkpoints, evaluation and logging
    metric_for_best_model: str = "cer"  # cer, wer or loss
    validate_every: int = 1  # epochs between evaluations
    save_every: int | None = None  # also keep a checkpoint every N epochs
    save_total_limit: int = 2
    logging_steps: int = 25
    early_stopping: EarlyStopping = field(default_factory=EarlyStopping)
    ema: Ema = field(default_factory=Ema)
    wandb: Wandb = field(default_factory=Wandb)
    augmentation: Augmentation = field(default_factory=Augmentation)
    # Fine-tuning
    init_from: str | None = None  # one of our model folders, or any AutoModelForCTC folder (e.g. Wav2Vec2ForCTC)
    reset_head: bool = False  # re-initialise the output layer when init_from has another vocabulary
    freeze_feature_encoder: bool = False
    freeze_layers: int = 0  # freeze the first N encoder layers
    # init_from's configuration values to change before it loads, e.g. {mask_time_prob: 0.05, layerdrop: 0.1}
    config_overrides: dict[str, Any] = field(default_factory=dict)
    head_learning_rate: float | None = None  # the output layer's learning rate; null: learning_rate
    layerwise_lr_decay: float | None = None  # each encoder layer learns at this factor of the one above; null: 1
    # LoRA adapters (peft) instead of training every weight; 0: off. The output layer still trains in full.
    lora_rank: int = 0
    lora_alpha: float = 16.0  # adapters are scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None  # null: the attention projections of the model's family
    tune: Tune = field(default_factory=Tune)
    # Paths (usually given on the command line)
    dataset: str | None = None  # a prepared folder, or a metadata CSV (always streamed)
    output_dir: str | None = None
    # Streaming: read train as an IterableDataset (needs max_steps); batches are packed per buffer of utterances
    streaming: bool = False
    stream_buffer_size: int = 1000
    # Any other transformers.TrainingArguments field, passed through unchanged
    training_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, section in _SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, section(**value))

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_config(self, vocab_size: int, pad_token_id: int) -> AI2TextConfig:
        """The model configuration this recipe describes."""
        return AI2TextConfig(
            vocab_size=vocab_size,
            pad_token_id=pad_token_id,
            d_model=self.d_model,
            num_encoder_layers=self.num_encoder_layers,
            num_heads=self.num_heads,
            d_ff=self.d_ff,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            n_mels=self.n_mels,
            num_pitch_features=PITCH_FEATURES if self.pitch else 0,
            hop_length=self.hop_length,
            sample_rate=self.sample_rate,
            block_type=self.block_type,
            conv_kernel_size=self.conv_kernel_size,
            subsampling_channels=self.subsampling_channels,
            interctc_layers=self.interctc_layers,
            interctc_weight=self.interctc_weight,
            self_conditioning=self.self_conditioning,
            apply_spec_augment=self.spec_augment,
            num_freq_masks=self.num_freq_masks,
            freq_mask_width=self.freq_mask_width,
            num_time_masks=self.num_time_masks,
            time_mask_max_ratio=self.time_mask_max_ratio,
            causal_subsampling=self.causal_subsampling,
            causal_conv=self.causal_conv,
            dynamic_chunk_training=self.dynamic_chunk_training,
            max_chunk_frames=self.max_chunk_frames,
            full_context_prob=self.full_context_prob,
            dynamic_left_chunks=self.dynamic_left_chunks,
            attention_left_chunks=self.attention_left_chunks,
        )


class _RecipeLoader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, which reads ``5e-4`` (no dot) as a string and ``no``/``on`` as booleans
    (``--eval_strategy no`` would become ``False``); read both as YAML 1.2 does."""


_BOOL = "tag:yaml.org,2002:bool"
_RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RecipeLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_RecipeLoader)  # a SafeLoader: no arbitrary objects


class RecipeError(ValueError):
    """A recipe key or value that cannot be used; the message names it and the fix."""


def _closest(key: str, candidates: list[str] | None = None) -> str:
    if candidates is None:
        candidates = Recipe.keys() + sorted(_TRAINING_ARGUMENT_FIELDS) + list(_ALIASES)
    match = difflib.get_close_matches(key, candidates, n=1)
    return f" Did you mean '{match[0]}'?" if match else ""


def _merge_section(values: dict[str, Any], name: str, updates: Any, source: str) -> None:
    """Fold a mapping into one section (``augmentation``, ``early_stopping``, ...), key by key."""
    if not isinstance(updates, dict):
        raise RecipeError(f"{source}: '{name}' must be a mapping of keys to values, got {updates!r}")
    known = [f.name for f in dataclasses.fields(_SECTIONS[name])]
    section = values.setdefault(name, {})
    for key, value in updates.items():
        if f"{name}.{key}" in _RENAMED:
            raise RecipeError(f"{source}: {_RENAMED[f'{name}.{key}']}.")
        if key not in known:
            hint = _closest(f"{name}.{key}", [f"{name}.{k}" for k in known])
            raise RecipeError(f"{source}: unknown key '{name}.{key}'.{hint}")
        section[key] = value


def canonical_key(key: str) -> str:
    """Our name for ``key`` (``num_train_epochs`` → ``num_epochs``, ``checkpoint_dir`` → ``output_dir``)."""
    return _ALIASES.get(key, key)


def _merge(values: dict[str, Any], updates: dict[str, Any], source: str, spelled: dict[str, str] | None = None) -> None:
    """Fold ``updates`` into ``values``; TrainingArguments fields go to ``training_args``.

    Sections merge key by key, so ``--augmentation.prob 0.3`` keeps the recipe's other augmentation keys.
    One source giving one setting under two names (``num_epochs`` and ``num_train_epochs``) is refused:
    which one should win is the user's call. ``spelled`` maps each key set so far in ``source`` to its spelling.
    """
    known = set(Recipe.keys())
    spelled = {} if spelled is None else spelled
    for given, value in updates.items():
        key = canonical_key(given)
        if key in spelled and spelled[key] != given:
            raise RecipeError(
                f"{source} sets both '{spelled[key]}' and '{given}', two names for the same setting: keep one "
                f"(the recipe key is '{key}')."
            )
        spelled[key] = given
        section, _, subkey = key.partition(".")
        if key == "training_args":
            if not isinstance(value, dict):
                raise RecipeError(f"{source}: 'training_args' must be a mapping")
            _merge(values, value, source, spelled)
        elif section in _SECTIONS:
            _merge_section(values, section, {subkey: value} if subkey else value, source)
        elif section in _MAPPINGS:
            if not subkey and not isinstance(value, dict):
                raise RecipeError(f"{source}: '{section}' must be a mapping of keys to values, got {value!r}")
            values[section] = {**values.get(section, {}), **({subkey: value} if subkey else value)}
        elif subkey:
            raise RecipeError(f"{source}: '{section}' has no sub-keys (sections: {', '.join(_SECTIONS)})")
        elif key in known:
            values[key] = value
        elif key in _TRAINING_ARGUMENT_FIELDS:
            values.setdefault("training_args", {})[key] = value
        else:
            raise RecipeError(f"{source}: unknown recipe key '{key}'.{_closest(key)}")


def _is_boolean(key: str) -> bool:
    """Whether ``key`` (a recipe key, ``section.key`` or TrainingArguments field) takes true/false."""
    key = canonical_key(key)
    section, _, subkey = key.partition(".")
    if subkey:
        owner = _SECTIONS.get(section)
        key = subkey
    else:
        owner = Recipe if section in Recipe.keys() else TrainingArguments
    types = {f.name: str(f.type) for f in dataclasses.fields(owner)} if owner else {}
    return "bool" in types.get(key, "")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["--learning_rate", "5e-4", "--num-epochs", "3"]`` → ``{"learning_rate": 5e-4, "num_epochs": 3}``.

    Values are read as YAML scalars, so numbers, booleans and ``null`` get their types; a true/false key
    given alone (``--reset-head``) means true.
    """
    overrides: dict[str, Any] = {}
    index = 0
    while index < len(pairs):
        token = pairs[index]
        if not token.startswith("--"):
            raise RecipeError(f"Expected an option like --key value, got '{token}'")
        key = token[2:].replace("-", "_")
        if "=" in key:
            key, raw = key.split("=", 1)
            index += 1
        elif index + 1 < len(pairs) and not pairs[index + 1].startswith("--"):
            raw = pairs[index + 1]
            index += 2
        elif _is_boolean(key):
            raw = "true"
            index += 1
        else:
            raise RecipeError(f"Option --{key} needs a value")
        overrides[key] = _load_yaml(raw)
    return overrides


def load_recipe(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Recipe:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (the command line).

    A run length given on the command line (``num_epochs`` or ``max_steps``) is what the user asked for: it
    ends the file's ``max_train_minutes`` too, unless the command line also gives ``max_train_minutes``.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise RecipeError(f"Recipe file not found: {path}. The shipped recipes are in recipes/.")
        loaded = _load_yaml(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise RecipeError(f"{path}: a recipe must be a YAML mapping of keys to values")
        _merge(values, loaded, str(path))
    if overrides:
        file_budget = values.get("max_train_minutes")
        given: dict[str, str] = {}
        _merge(values, overrides, "command line", given)
        length = [given[key] for key in _LENGTH_KEYS if key in given]
        if file_budget and length and "max_train_minutes" not in given:
            values["max_train_minutes"] = None
            logger.warning(
                "--%s on the command line sets the run's length, so %s's max_train_minutes: %g no longer applies "
                "(add --max_train_minutes %g to keep that budget too).",
                length[0], path, file_budget, file_budget,
            )  # fmt: skip
    recipe = Recipe(**values)
    _check(recipe)
    return recipe


def _check(recipe: Recipe) -> None:
    if recipe.vocab not in ("alphabet", "data"):
        raise RecipeError(f"vocab must be 'alphabet' or 'data', got {recipe.vocab!r}")
    if recipe.amp_dtype not in ("fp16", "bf16"):
        raise RecipeError(f"amp_dtype must be fp16 or bf16, got {recipe.amp_dtype!r}")
    if recipe.device not in ("auto", "cpu", "cuda", "mps"):
        raise RecipeError(f"device must be auto, cpu, cuda or mps, got {recipe.device!r}")
    if recipe.lr_scheduler not in scheduler_names():
        hint = _closest(recipe.lr_scheduler, scheduler_names())
        raise RecipeError(f"lr_scheduler {recipe.lr_scheduler!r} is unknown ({', '.join(scheduler_names())}).{hint}")
    if recipe.metric_for_best_model not in ("cer", "wer", "loss"):
        raise RecipeError(f"metric_for_best_model must be cer, wer or loss, got {recipe.metric_for_best_model!r}")
    for name in ("learning_rate", "max_batch_seconds", "num_epochs"):
        if not getattr(recipe, name) or getattr(recipe, name) <= 0:
            raise RecipeError(f"{name} must be positive, got {getattr(recipe, name)!r}")
    try:
        recipe.augmentation.check(check_paths=recipe.augmentation.enabled)
    except ValueError as error:
        raise RecipeError(str(error)) from error
    _check_fine_tuning(recipe)
    _check_streaming(recipe)
    if recipe.pitch_norm_window is not None and not recipe.pitch_norm_window > 0:
        raise RecipeError(
            f"pitch_norm_window must be a positive number of seconds, or null for the whole utterance; "
            f"got {recipe.pitch_norm_window!r}"
        )


def _check_streaming(recipe: Recipe) -> None:
    if recipe.feature_normalize not in ("utterance", "causal"):
        raise RecipeError(f"feature_normalize must be 'utterance' or 'causal', got {recipe.feature_normalize!r}")
    if not recipe.dynamic_chunk_training:
        return
    if recipe.pitch or recipe.feature_normalize != "causal":
        raise RecipeError(
            "dynamic_chunk_training trains a streaming model, whose features must be computable as audio arrives: "
            "set pitch: false (the pitch columns are centred on 1.5 s around each frame) and feature_normalize: "
            "causal, as recipes/streaming-cpu.yaml does."
        )


def _check_fine_tuning(recipe: Recipe) -> None:
    for name in ("head_learning_rate", "layerwise_lr_decay"):
        value = getattr(recipe, name)
        if value is not None and not value > 0:
            raise RecipeError(f"{name} must be positive (or null for learning_rate everywhere), got {value!r}")
    if recipe.layerwise_lr_decay is not None and recipe.layerwise_lr_decay > 1:
        raise RecipeError(f"layerwise_lr_decay must be at most 1 (e.g. 0.9), got {recipe.layerwise_lr_decay!r}")
    if recipe.config_overrides and not recipe.init_from:
        raise RecipeError(
            "config_overrides changes the configuration of the init_from model, and no init_from is set: set the "
            "architecture keys (d_model, dropout, ...) for a new model instead."
        )
    if not recipe.lora_rank:
        return
    if recipe.lora_rank < 0 or recipe.lora_alpha <= 0 or not 0 <= recipe.lora_dropout < 1:
        raise RecipeError(
            f"LoRA needs lora_rank > 0, lora_alpha > 0 and 0 <= lora_dropout < 1; got {recipe.lora_rank!r}, "
            f"{recipe.lora_alpha!r} and {recipe.lora_dropout!r}"
        )
    if not recipe.init_from:
        raise RecipeError(
            "lora_rank adapts a trained model: set init_from (a local copy of e.g. facebook/wav2vec2-xls-r-300m, "
            "or runs/<name>/model), or lora_rank: 0 to train a new model."
        )
    if recipe.ema.enabled:
        raise RecipeError("ema averages every weight but LoRA trains adapters: set ema.enabled false or lora_rank 0.")


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
