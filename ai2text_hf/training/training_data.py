"""What the trainer feeds the model: precomputed features, 16 kHz audio featurised per batch, or a stream.

Three sources, one contract (``train``/``validation`` with ``duration``, ``text`` and either ``input_features``
or ``audio``):

- a prepared folder (``ai2text prepare``): its ``manifest.json`` says whether it stores features or audio
  (``--on-the-fly``); with ``streaming: true`` its train split is read as an ``IterableDataset``;
- a metadata CSV: always streamed, rows checked and decoded while training (``ai2text_hf.data.streaming``),
  never materialised; validation is read into memory once (it is evaluated repeatedly).

Waveform augmentation and foreign models (Wav2Vec2: raw audio) need the audio path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from transformers import TrainerCallback

from ..data.augment.chain import WaveformAugmenter
from ..data.augment.noise import BabblePool
from ..data.collator import AudioCTCCollator, CTCCollator
from ..data.loading import check_front_end
from ..data.prepare import load_prepared, read_manifest
from ..data.sampler import DurationBatchSampler
from ..data.streaming import stream_dataset
from ..data.versions import resolve_split
from ..tokenization_ai2text import AI2TextTokenizer
from .arguments import num_processes, process_rank
from .initial_model import InitialModel, output_frames, recipe_feature_extractor
from .recipe import Recipe

logger = logging.getLogger("ai2text_hf.training")


@dataclass
class Splits:
    """The train and validation splits as read, before labels and model inputs."""

    train: datasets.Dataset | datasets.IterableDataset
    validation: datasets.Dataset
    store: str  # "features" or "audio"
    source: str
    manifest: dict | None  # None for a CSV

    @property
    def streamed(self) -> bool:
        return isinstance(self.train, datasets.IterableDataset)

    def train_texts(self, recipe: Recipe) -> list[str]:
        """What a data-built vocabulary is made from (a stream would have to be read to the end first)."""
        if recipe.vocab != "data":
            return []
        if self.streamed:
            raise ValueError(
                "vocab: data reads every train transcript first, which a streamed run cannot: use "
                "vocab: alphabet (the default) with streaming."
            )
        return list(self.train["text"])

    def describe(self) -> str:
        validation_hours = float(np.sum(self.validation["duration"])) / 3600
        if self.streamed:
            train = "streamed train split"
        else:
            train = f"{len(self.train)} train utterances ({float(np.sum(self.train['duration'])) / 3600:.2f} h)"
        kind = "audio, features computed per batch" if self.store == "audio" else "precomputed features"
        validation = f"{len(self.validation)} validation ({validation_hours:.2f} h)"
        return f"Dataset {self.source}: {train}, {validation}; {kind}."


@dataclass
class TrainingData:
    """Splits with ``labels``, and the collators that turn their rows into the model's inputs."""

    train: datasets.Dataset | datasets.IterableDataset
    validation: datasets.Dataset
    train_collator: CTCCollator | AudioCTCCollator
    eval_collator: CTCCollator | AudioCTCCollator


def open_splits(recipe: Recipe, path: Path) -> Splits:
    """Read ``path`` (a prepared folder or a metadata CSV) as the recipe asks."""
    if path.is_file() and path.suffix.lower() == ".csv":
        return _csv_splits(recipe, path)
    manifest = read_manifest(path)
    data = load_prepared(path)
    train, validation = data["train"], data[resolve_split(data, "validation")]  # "val" in folders of format 1
    if len(train) == 0 or len(validation) == 0:
        raise ValueError(
            f"{path} has {len(train)} train and {len(validation)} validation utterances: training needs both. "
            "Give some rows split=validation in the metadata CSV (or let `ai2text prepare --validation-from-train` "
            "carve them from train) and prepare again."
        )
    if recipe.streaming:
        shards = min(len(train), max(1, recipe.num_workers) * 8)
        train = train.to_iterable_dataset(num_shards=shards)
        train = train.shuffle(seed=recipe.seed, buffer_size=recipe.stream_buffer_size)
    return Splits(train, validation, manifest["options"]["store"], str(path), manifest)


def _csv_splits(recipe: Recipe, csv_path: Path) -> Splits:
    feature_extractor = recipe_feature_extractor(recipe)
    options = {"feature_extractor": feature_extractor, "tone_placement": recipe.tone_placement, "store": "audio"}
    train = stream_dataset(csv_path, split="train", **options)
    validation = datasets.Dataset.from_list(list(stream_dataset(csv_path, split="validation", **options)))
    train = train.shuffle(seed=recipe.seed, buffer_size=recipe.stream_buffer_size)
    return Splits(train, validation, "audio", str(csv_path), None)


def model_inputs(splits: Splits, recipe: Recipe, tokenizer: AI2TextTokenizer, initial: InitialModel) -> TrainingData:
    """Check the data suits the model and the recipe, attach labels and choose the collators."""
    if splits.streamed and not recipe.training_args.get("max_steps", -1) > 0:
        raise ValueError(
            "A streamed train split has no known length, so the run needs a step budget: set max_steps "
            "(e.g. --max_steps 20000)."
        )
    augment = recipe.augmentation.enabled
    if splits.store == "features":
        if augment:
            raise ValueError(
                f"augmentation is enabled but {splits.source} stores precomputed features: waveform augmentation "
                "needs the audio. Prepare the data again with `ai2text prepare --on-the-fly ...`, or set "
                "--augmentation.enabled false."
            )
        if not initial.ours:
            raise ValueError(
                f"init_from {recipe.init_from} is a {type(initial.model).__name__}, which reads raw audio, but "
                f"{splits.source} stores log-mel features: prepare the data with `ai2text prepare --on-the-fly`."
            )
    check_front_end(
        splits.manifest or {},
        splits.store == "features",
        initial.feature_extractor,
        splits.source,
        type(initial.model).__name__,
    )
    train = _with_labels(splits.train, tokenizer)
    validation = _with_labels(splits.validation, tokenizer)
    if splits.store == "features":
        collator = CTCCollator(padding_value=initial.feature_extractor.padding_value)
        return TrainingData(train, validation, collator, collator)
    augmenter = _augmenter(splits, recipe, initial.feature_extractor.sampling_rate) if augment else None
    return TrainingData(
        train,
        validation,
        AudioCTCCollator(initial.feature_extractor, augmenter, output_frames(initial)),
        AudioCTCCollator(initial.feature_extractor),
    )


def train_sampler(recipe: Recipe, train: datasets.Dataset | datasets.IterableDataset) -> DurationBatchSampler | None:
    """This process's share of the duration-bucketed train batches; ``None`` for a stream (packed as it is read)."""
    if isinstance(train, datasets.IterableDataset):
        return None
    return DurationBatchSampler(
        list(train["duration"]),
        max_batch_seconds=recipe.max_batch_seconds,
        max_batch_size=recipe.batch_size,
        seed=recipe.seed,
        num_replicas=num_processes(),
        rank=process_rank(),
    )


def _augmenter(splits: Splits, recipe: Recipe, sample_rate: int) -> WaveformAugmenter:
    """The recipe's augmenter, with its babble pool drawn from the train split when babble is among the noises."""
    options = recipe.augmentation
    babble = None
    if options.noise_prob > 0 and "babble" in options.noise_sources:
        babble = BabblePool.from_dataset(splits.train, options.babble_pool_size, recipe.seed)
    augmenter = WaveformAugmenter(options, sample_rate=sample_rate, seed=recipe.seed, babble=babble)
    logger.info("Waveform augmentation of train utterances (probability of each family): %s.", augmenter.describe())
    return augmenter


def _tokenize(batch: dict, tokenizer: AI2TextTokenizer) -> dict:
    return {"labels": tokenizer(list(batch["text"]))["input_ids"]}


def _with_labels(
    dataset: datasets.Dataset | datasets.IterableDataset, tokenizer: AI2TextTokenizer
) -> datasets.Dataset | datasets.IterableDataset:
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.map(_tokenize, batched=True, fn_kwargs={"tokenizer": tokenizer}).with_format("numpy")
    # A new column, not a map: the (large) feature or audio column is not rewritten.
    return dataset.add_column("labels", tokenizer(list(dataset["text"]))["input_ids"]).with_format("numpy")


class CollatorEpoch(TrainerCallback):
    """Tells the augmenting collator the epoch, before the epoch's loader (and its workers) start; after it, logs
    the noise files that failed to decode in this process (DataLoader workers warn about their own)."""

    def __init__(self, collator: AudioCTCCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(state.epoch or 0)

    def on_epoch_end(self, args, state, control, **kwargs):
        skipped = self.collator.augmenter.skipped_noise_files if self.collator.augmenter else 0
        if skipped:
            plural = skipped != 1
            logger.warning(
                "%d noise file%s could not be decoded and %s skipped so far (the warnings above name them).",
                skipped, "s" if plural else "", "were" if plural else "was",
            )  # fmt: skip
