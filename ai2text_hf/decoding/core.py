"""From a CTC frame path to text, word timestamps and confidences; the decoder interface.

Every decoder (greedy or beam search) picks one token per frame, a *path*; everything else is read
off that path the same way, so greedy and beam results carry the same fields:

* text and word times come from the tokenizer's CTC offsets (the code the ASR pipeline uses), scaled
  by ``seconds_per_frame`` (= ``inputs_to_logits_ratio`` / sampling rate);
* confidences come from the posteriors of the path's tokens. A letter's confidence is the mean
  posterior over the frames it spans; a word's is its least confident letter (one wrong tone mark
  makes the whole syllable wrong); the utterance's is the mean posterior over all frames where the
  path emits something (letters and word delimiters), or over all frames when it emits nothing.
  All lie in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..tokenization_ai2text import AI2TextTokenizer


@dataclass
class DecodedUtterance:
    text: str
    words: list[dict] = field(default_factory=list)  # {"word", "start", "end", "confidence"}, seconds
    confidence: float = 0.0


def _word_confidences(path: torch.Tensor, posteriors: np.ndarray, blank: int, delimiter: int) -> dict[int, float]:
    """First frame of each word -> its confidence (the minimum over its letters of their mean posterior).

    Runs of equal tokens and their mean posteriors come from a few array calls, then one Python step per run
    (letters, not frames): this runs on every partial result of a stream."""
    tokens, counts = torch.unique_consecutive(path, return_counts=True)
    ends = np.cumsum(counts.numpy())
    starts = ends - counts.numpy()
    sums = np.concatenate([[0.0], np.cumsum(posteriors, dtype=np.float64)])
    means = (sums[ends] - sums[starts]) / counts.numpy()
    words: dict[int, float] = {}
    start = None
    for token, first, mean in zip(tokens.tolist(), starts.tolist(), means.tolist()):
        if token == delimiter:
            start = None
        elif token != blank:
            start = first if start is None else start
            words[start] = min(words.get(start, 1.0), mean)
    return words


def utterance_from_path(
    path: torch.Tensor,
    log_probs: torch.Tensor,
    tokenizer: AI2TextTokenizer,
    seconds_per_frame: float,
    word_timestamps: bool = True,
) -> DecodedUtterance:
    """Text, words and confidences of one utterance's frame ``path`` given its ``(frames, vocab)`` log posteriors."""
    posteriors = log_probs.gather(1, path[:, None].long())[:, 0].exp().numpy()
    ids = path.tolist()
    emitting = np.asarray(ids) != tokenizer.pad_token_id
    confidence = float(posteriors[emitting].mean() if emitting.any() else posteriors.mean()) if ids else 0.0
    if not word_timestamps:
        return DecodedUtterance(text=tokenizer.decode(ids), confidence=confidence)
    by_start = _word_confidences(
        path, posteriors, tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids(tokenizer.word_delimiter_token)
    )
    decoded = tokenizer.decode(ids, output_word_offsets=True)
    words = [
        {
            "word": w["word"],
            "start": round(float(w["start_offset"] * seconds_per_frame), 3),
            "end": round(float(w["end_offset"] * seconds_per_frame), 3),
            "confidence": round(by_start.get(int(w["start_offset"]), confidence), 4),
        }
        for w in decoded["word_offsets"]
    ]
    return DecodedUtterance(text=decoded["text"], words=words, confidence=confidence)


class CTCDecoder:
    """Turns a batch of CTC logits into :class:`DecodedUtterance` s; subclasses choose the frame path."""

    name = "ctc"

    def __init__(self, tokenizer: AI2TextTokenizer):
        self.tokenizer = tokenizer

    def best_paths(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """One token id per valid frame of each utterance (padding frames are never decoded)."""
        raise NotImplementedError

    def decode(
        self,
        logits: torch.Tensor,
        lengths: torch.Tensor,
        seconds_per_frame: float,
        word_timestamps: bool = True,
    ) -> list[DecodedUtterance]:
        log_probs = logits.detach().float().log_softmax(-1).cpu().contiguous()
        lengths = lengths.cpu()
        paths = self.best_paths(log_probs, lengths)
        return [
            utterance_from_path(path, log_probs[i, : len(path)], self.tokenizer, seconds_per_frame, word_timestamps)
            for i, path in enumerate(paths)
        ]
