"""Batch collation for CTC training on precomputed log-mel features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class CTCCollator:
    """Pads ``input_features`` (frames, mels) with a frame mask and ``labels`` with -100.

    -100 is what the model's CTC loss and the Trainer's metric code treat as "no label".
    """

    padding_value: float = 0.0
    label_pad_id: int = -100

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
            labels = [torch.tensor(np.asarray(item["labels"], dtype=np.int64)) for item in items]
            batch["labels"] = torch.nn.utils.rnn.pad_sequence(labels, batch_first=True, padding_value=self.label_pad_id)
        return batch
