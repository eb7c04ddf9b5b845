"""Word and character error rates on normalised text.

References and hypotheses go through the same normaliser as the training labels, so a metric never
counts a casing, punctuation or tone-placement difference as an error. Vietnamese words are written
as space-separated syllables, so "WER" here is the syllable error rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import jiwer

from .normalization_vi import normalize_text


def error_rates(
    references: Sequence[str], hypotheses: Sequence[str], tone_placement: str = "classic"
) -> dict[str, float]:
    """Corpus-level ``wer`` and ``cer`` as fractions (0.083, not 8.3).

    Utterances whose normalised reference is empty are skipped: they have no defined error rate.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    pairs = [
        (normalize_text(r, tone_placement), normalize_text(h, tone_placement)) for r, h in zip(references, hypotheses)
    ]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return {"wer": 0.0, "cer": 0.0}
    refs, hyps = zip(*pairs)
    return {"wer": float(jiwer.wer(list(refs), list(hyps))), "cer": float(jiwer.cer(list(refs), list(hyps)))}


def utterance_error_rates(reference: str, hypothesis: str, tone_placement: str = "classic") -> dict[str, float]:
    """``wer`` and ``cer`` of one utterance (1.0 for a non-empty hypothesis of an empty reference)."""
    ref = normalize_text(reference, tone_placement)
    hyp = normalize_text(hypothesis, tone_placement)
    if not ref:
        rate = 0.0 if not hyp else 1.0
        return {"wer": rate, "cer": rate}
    return {"wer": float(jiwer.wer(ref, hyp)), "cer": float(jiwer.cer(ref, hyp))}
