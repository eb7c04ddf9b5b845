"""One loader for scoring a prepared split with a model: ``evaluate``, ``doctor``, ``lm tune`` and ``export``'s parity.

A prepared version stores either our log-mel features (computed at preparation) or 16 kHz audio
(``prepare --on-the-fly``). Stored features only suit a model whose feature extractor computes exactly
those features; stored audio suits any model, which then gets its inputs from its own feature extractor
(log-mels for ours, normalised samples for wav2vec2-style models, stacked filterbanks for w2v-BERT).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor

from ..feature_extraction_ai2text import AI2TextFeatureExtractor
from .audio import with_features
from .features import assert_features_match
from .versions import load_prepared, read_manifest, resolve_split


@dataclass
class ScoringSplit:
    """A split ready for a model: rows carry its unpadded inputs in ``input_features`` (whatever the model's input is
    called), next to ``id``, ``text``, ``duration`` and the other prepared columns."""

    dataset: Any  # datasets.Dataset with a read-time transform or numpy format
    manifest: dict
    name: str


def stores_features(dataset: Any) -> bool:
    """True for a split of precomputed log-mel features, False for one of audio (``prepare --on-the-fly``)."""
    return "input_features" in dataset.column_names


def check_front_end(
    manifest: dict, stored_features: bool, feature_extractor: SequenceFeatureExtractor, source: str, model: str
) -> None:
    """Stored features must be the ones the model's feature extractor computes; stored audio only needs its rate.

    ``model`` names the model in the message (e.g. ``Wav2Vec2ForCTC``).
    """
    stored = manifest.get("feature_extractor")
    if stored is None:
        return
    if stored_features:
        if not isinstance(feature_extractor, AI2TextFeatureExtractor):
            raise ValueError(
                f"{source} stores log-mel features computed at preparation, but {model} computes its own inputs "
                f"with {type(feature_extractor).__name__}: prepare the data with `ai2text prepare --on-the-fly` "
                "(it keeps the audio, and every model featurises it its own way)."
            )
        assert_features_match(stored, feature_extractor.to_dict(), source)
    elif stored["sampling_rate"] != feature_extractor.sampling_rate:
        raise ValueError(
            f"{source} stores audio at {stored['sampling_rate']} Hz but {model} reads "
            f"{feature_extractor.sampling_rate} Hz: prepare the data again with that rate."
        )


def load_scoring_split(
    dataset_dir: str | Path,
    split: str,
    feature_extractor: SequenceFeatureExtractor,
    model: str = "the model",
    limit: int | None = None,
    purpose: str = "evaluate",
) -> ScoringSplit:
    """The first ``limit`` rows of ``split`` with the model's inputs, after checking they suit the model.

    Clear errors for a missing or empty split and for data the model cannot read (``purpose`` words the latter:
    "nothing to <purpose>").
    """
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir)
    data = load_prepared(dataset_dir)
    try:
        split = resolve_split(data, split)  # `validation` finds the `val` of folders prepared before the rename
    except ValueError as error:
        raise ValueError(f"{dataset_dir}: {error}") from None
    dataset = data[split]
    check_front_end(manifest, stores_features(dataset), feature_extractor, str(dataset_dir), model)
    if limit:
        dataset = dataset.select(range(min(limit, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"Split '{split}' of {dataset_dir} is empty: nothing to {purpose}.")
    return ScoringSplit(with_features(dataset, feature_extractor), manifest, split)
