"""Batch collation for CTC training: precomputed log-mel features, or 16 kHz audio featurised per batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor

from .audio import audio_array
from .augment.chain import WaveformAugmenter
from .augment.vtlp import VocalTractWarp
from .validation import ctc_min_frames

#: What the model's CTC loss and the Trainer's metric code treat as "no label".
LABEL_PAD_ID = -100


def pad_labels(items: Sequence[dict[str, Any]], pad_id: int = LABEL_PAD_ID) -> torch.Tensor:
    labels = [torch.tensor(np.asarray(item["labels"], dtype=np.int64)) for item in items]
    return torch.nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=pad_id)


@dataclass
class CTCCollator:
    """Pads ``input_features`` (frames, mels) with a frame mask and ``labels`` with -100."""

    padding_value: float = 0.0
    label_pad_id: int = LABEL_PAD_ID
    #: Dataset columns this collator reads (the trainer keeps only these).
    columns: ClassVar[tuple[str, ...]] = ("id", "input_features", "labels")

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        features = [torch.tensor(np.asarray(item["input_features"], dtype=np.float32)) for item in items]
        lengths = torch.tensor([f.shape[0] for f in features])
        batch = {
            "input_features": torch.nn.utils.rnn.pad_sequence(
                features, batch_first=True, padding_value=self.padding_value
            ),
            "attention_mask": (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).to(torch.int32),
        }
        if "labels" in items[0]:
            batch["labels"] = pad_labels(items, self.label_pad_id)
        if "id" in items[0]:  # the trainer's guard rails name utterances
            batch["id"] = [str(item["id"]) for item in items]
        return batch


@dataclass
class AudioCTCCollator:
    """Featurises the ``audio`` column (16 kHz, from ``prepare --on-the-fly``) per batch, after augmentation.

    ``feature_extractor`` is the model's own: ours gives ``input_features`` (the same log-mels preparation
    stores: the STFT pads with zeros, so batching does not change them), a Wav2Vec2 extractor gives
    normalised ``input_values``; both with an ``attention_mask`` in their input's units. Augmentation
    (train only: evaluation gets a collator without ``augmenter``) is seeded per ``(epoch, utterance id)``;
    the trainer sets ``epoch``. ``output_frames(num_samples)`` is the model's CTC frame count, so a length
    change that would leave too few frames for the transcript is skipped for that utterance. VTLP
    (``vtlp_prob``) warps the chosen utterances' mel columns after featurisation; it needs our feature
    extractor and says so otherwise.
    """

    feature_extractor: SequenceFeatureExtractor
    augmenter: WaveformAugmenter | None = None
    output_frames: Callable[[int], int] | None = None
    epoch: int = 0
    label_pad_id: int = LABEL_PAD_ID
    columns: ClassVar[tuple[str, ...]] = ("id", "audio", "labels")
    _vtlp: VocalTractWarp | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.augmenter is not None and self.augmenter.options.vtlp_prob > 0:
            self._vtlp = VocalTractWarp(self.feature_extractor)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        waves = [audio_array(item["audio"]) for item in items]
        if self.augmenter is not None:
            waves = [self._augment(wave, item) for wave, item in zip(waves, items)]
        batch = dict(
            self.feature_extractor(
                waves,
                sampling_rate=self.feature_extractor.sampling_rate,
                padding="longest",
                return_attention_mask=True,
                return_tensors="pt",
            )
        )
        if self._vtlp is not None:
            frames = batch["attention_mask"].sum(-1).tolist()
            for row, (item, length) in enumerate(zip(items, frames)):
                alpha = self.augmenter.warp_factor(self.epoch, str(item["id"]))
                if alpha is not None:
                    features = batch["input_features"][row, :length]
                    features[:, : self._vtlp.mels] = self._vtlp(features, alpha)
        if "labels" in items[0]:
            batch["labels"] = pad_labels(items, self.label_pad_id)
        if "id" in items[0]:  # the trainer's guard rails name utterances
            batch["id"] = [str(item["id"]) for item in items]
        return batch

    def _augment(self, wave: np.ndarray, item: dict[str, Any]) -> np.ndarray:
        fits = None
        if self.output_frames is not None and "labels" in item:
            needed, frames = ctc_min_frames(list(item["labels"])), self.output_frames

            def fits(samples: int) -> bool:
                return frames(samples) >= needed

        return self.augmenter(wave, self.epoch, str(item["id"]), fits)
