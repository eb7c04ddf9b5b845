"""Greedy (best path) CTC decoding with word timestamps."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..tokenization_ai2text import AI2TextTokenizer


@dataclass
class DecodedUtterance:
    text: str
    words: list[dict] = field(default_factory=list)  # {"word", "start", "end"} in seconds


def greedy_decode(
    logits: torch.Tensor,
    lengths: torch.Tensor,
    tokenizer: AI2TextTokenizer,
    seconds_per_frame: float,
    word_timestamps: bool = True,
) -> list[DecodedUtterance]:
    """Best path per utterance over its valid frames only (padding never becomes characters).

    Word times come from the tokenizer's CTC offsets (the same code the ASR pipeline uses), scaled
    by ``seconds_per_frame`` (= ``inputs_to_logits_ratio`` / sampling rate).
    """
    ids = logits.argmax(-1).cpu()
    results = []
    for row, length in zip(ids, lengths.tolist()):
        row = row[:length].tolist()
        if not word_timestamps:
            results.append(DecodedUtterance(text=tokenizer.decode(row)))
            continue
        decoded = tokenizer.decode(row, output_word_offsets=True)
        words = [
            {
                "word": w["word"],
                "start": round(w["start_offset"] * seconds_per_frame, 3),
                "end": round(w["end_offset"] * seconds_per_frame, 3),
            }
            for w in decoded["word_offsets"]
        ]
        results.append(DecodedUtterance(text=decoded["text"], words=words))
    return results
