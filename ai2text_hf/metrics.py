"""Word and character error rates on normalised text, and the Vietnamese error analysis behind reports.

References and hypotheses go through the same normaliser as the training labels, so a metric never
counts a casing, punctuation or tone-placement difference as an error. Vietnamese words are written
as space-separated syllables, so "WER" here is the syllable error rate.

Beyond WER/CER, :func:`error_analysis` reports what no toolkit does for Vietnamese: the
tone/diacritic error rate (syllables whose base letters are right but whose tone mark or letter
diacritic is wrong: việt -> viêt, đường -> dương) and the share of all errors they make up.
"""

from __future__ import annotations

import unicodedata
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer

from .normalization_vi import normalize_text

WER_UNIT = "syllable"
"""What "WER" counts: Vietnamese orthographic words are syllables separated by spaces."""

# Combining marks after NFD: the five tones, then the letter diacritics of ă/â/ê/ô/ơ/ư.
_TONE_MARKS = frozenset("\u0300\u0301\u0309\u0303\u0323")
_LETTER_MARKS = frozenset("\u0306\u0302\u031b")


def _normalised_pairs(
    references: Sequence[str], hypotheses: Sequence[str], tone_placement: str
) -> list[tuple[int, str, str]]:
    """``(index, reference, hypothesis)`` after normalisation, dropping empty references (no defined rate)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    pairs = []
    for index, (ref, hyp) in enumerate(zip(references, hypotheses)):
        ref = normalize_text(ref, tone_placement)
        if ref:
            pairs.append((index, ref, normalize_text(hyp, tone_placement)))
    return pairs


def error_rates(
    references: Sequence[str], hypotheses: Sequence[str], tone_placement: str = "classic"
) -> dict[str, float]:
    """Corpus-level ``wer`` and ``cer`` as fractions (0.083, not 8.3).

    Utterances whose normalised reference is empty are skipped: they have no defined error rate.
    """
    pairs = _normalised_pairs(references, hypotheses, tone_placement)
    if not pairs:
        return {"wer": 0.0, "cer": 0.0}
    _, refs, hyps = zip(*pairs)
    return {"wer": float(jiwer.wer(list(refs), list(hyps))), "cer": float(jiwer.cer(list(refs), list(hyps)))}


def utterance_error_rates(reference: str, hypothesis: str, tone_placement: str = "classic") -> dict[str, float]:
    """``wer`` and ``cer`` of one utterance (1.0 for a non-empty hypothesis of an empty reference)."""
    ref = normalize_text(reference, tone_placement)
    hyp = normalize_text(hypothesis, tone_placement)
    if not ref:
        rate = 0.0 if not hyp else 1.0
        return {"wer": rate, "cer": rate}
    return {"wer": float(jiwer.wer(ref, hyp)), "cer": float(jiwer.cer(ref, hyp))}


def strip_tone(syllable: str) -> str:
    """The syllable without its tone mark (letter diacritics kept): việt -> viêt."""
    decomposed = unicodedata.normalize("NFD", syllable)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if c not in _TONE_MARKS))


def base_letters(syllable: str) -> str:
    """The syllable without any tone mark or letter diacritic: đường -> duong."""
    decomposed = unicodedata.normalize("NFD", syllable.replace("đ", "d"))
    return "".join(c for c in decomposed if c not in _TONE_MARKS and c not in _LETTER_MARKS)


def tone_error_kind(reference: str, hypothesis: str) -> str | None:
    """``"tone"`` when only the tone mark differs, ``"diacritic"`` when a letter diacritic (ă â ê ô ơ ư đ)
    differs too but the base letters match, else ``None`` (a different syllable, or the same one)."""
    if reference == hypothesis or base_letters(reference) != base_letters(hypothesis):
        return None
    return "tone" if strip_tone(reference) == strip_tone(hypothesis) else "diacritic"


@dataclass
class UtteranceErrors:
    """Edit counts of one normalised reference/hypothesis pair, syllables and characters."""

    reference: str
    hypothesis: str
    words: int
    substitutions: int
    deletions: int
    insertions: int
    chars: int
    char_errors: int
    tone_errors: int
    tone_only_errors: int
    error_pairs: list[tuple[str, str]]  # (reference, hypothesis) syllable of every error, "" for the missing side
    char_substitutions: list[tuple[str, str]]

    @property
    def word_errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.word_errors / self.words

    @property
    def cer(self) -> float:
        return self.char_errors / self.chars


def utterance_errors(reference: str, hypothesis: str) -> UtteranceErrors:
    """Align one already normalised, non-empty reference with its hypothesis."""
    words = jiwer.process_words(reference, hypothesis)
    ref_words, hyp_words = words.references[0], words.hypotheses[0]
    pairs: list[tuple[str, str]] = []
    for chunk in words.alignments[0]:
        ref_span = ref_words[chunk.ref_start_idx : chunk.ref_end_idx]
        hyp_span = hyp_words[chunk.hyp_start_idx : chunk.hyp_end_idx]
        if chunk.type == "substitute":
            pairs += zip(ref_span, hyp_span)
        elif chunk.type == "delete":
            pairs += [(r, "") for r in ref_span]
        elif chunk.type == "insert":
            pairs += [("", h) for h in hyp_span]
    tone_kinds = [tone_error_kind(r, h) for r, h in pairs if r and h]
    chars = jiwer.process_characters(reference, hypothesis)
    ref_chars, hyp_chars = chars.references[0], chars.hypotheses[0]
    char_substitutions = [
        (ref_chars[chunk.ref_start_idx + k], hyp_chars[chunk.hyp_start_idx + k])
        for chunk in chars.alignments[0]
        if chunk.type == "substitute"
        for k in range(chunk.ref_end_idx - chunk.ref_start_idx)
    ]
    return UtteranceErrors(
        reference=reference,
        hypothesis=hypothesis,
        words=len(ref_words),
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
        chars=len(ref_chars),
        char_errors=chars.substitutions + chars.deletions + chars.insertions,
        tone_errors=sum(kind is not None for kind in tone_kinds),
        tone_only_errors=tone_kinds.count("tone"),
        error_pairs=pairs,
        char_substitutions=char_substitutions,
    )


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _top(counter: Counter, top_k: int) -> list[dict]:
    return [{"reference": ref, "hypothesis": hyp, "count": n} for (ref, hyp), n in counter.most_common(top_k)]


def _totals(items: Sequence[UtteranceErrors]) -> dict[str, float]:
    words = sum(u.words for u in items)
    chars = sum(u.chars for u in items)
    return {
        "wer": _share(sum(u.word_errors for u in items), words),
        "cer": _share(sum(u.char_errors for u in items), chars),
    }


def error_analysis(
    references: Sequence[str],
    hypotheses: Sequence[str],
    tone_placement: str = "classic",
    speakers: Sequence[str] | None = None,
    top_k: int = 20,
) -> dict:
    """Every metric of an evaluation report, as fractions under fixed lowercase keys.

    ``substitutions``/``deletions``/``insertions`` are shares of all syllable errors (they sum to 1),
    ``tone_error_rate`` is tone/diacritic substitutions per reference syllable and ``tone_error_share``
    their share of all syllable errors. ``top_errors`` counts syllable errors (``""`` on the side of a
    deletion or insertion), ``char_confusions`` substituted characters.
    """
    if speakers is not None and len(speakers) != len(references):
        raise ValueError(f"{len(references)} references but {len(speakers)} speakers")
    pairs = _normalised_pairs(references, hypotheses, tone_placement)
    scored = [(index, utterance_errors(ref, hyp)) for index, ref, hyp in pairs]
    items = [u for _, u in scored]
    errors = sum(u.word_errors for u in items)
    tone_errors = sum(u.tone_errors for u in items)
    totals = _totals(items)
    by_speaker: dict[str, list[UtteranceErrors]] = defaultdict(list)
    for index, u in scored:
        by_speaker[speakers[index] if speakers is not None else ""].append(u)
    return {
        **totals,
        "wer_unit": WER_UNIT,
        "accuracy": 1.0 - totals["wer"],
        "sentence_accuracy": _share(sum(u.word_errors == 0 for u in items), len(items)),
        "substitutions": _share(sum(u.substitutions for u in items), errors),
        "deletions": _share(sum(u.deletions for u in items), errors),
        "insertions": _share(sum(u.insertions for u in items), errors),
        "tone_error_rate": _share(tone_errors, sum(u.words for u in items)),
        "tone_error_share": _share(tone_errors, errors),
        "tone_only_share": _share(sum(u.tone_only_errors for u in items), tone_errors),
        "counts": {
            "utterances": len(items),
            "skipped_empty_references": len(references) - len(items),
            "reference_syllables": sum(u.words for u in items),
            "reference_characters": sum(u.chars for u in items),
            "syllable_errors": errors,
            "substitutions": sum(u.substitutions for u in items),
            "deletions": sum(u.deletions for u in items),
            "insertions": sum(u.insertions for u in items),
            "tone_errors": tone_errors,
        },
        "top_errors": _top(Counter(pair for u in items for pair in u.error_pairs), top_k),
        "char_confusions": _top(Counter(pair for u in items for pair in u.char_substitutions), top_k),
        "per_speaker": {
            speaker: {**_totals(group), "num_samples": len(group)}
            for speaker, group in sorted(by_speaker.items())
            if speakers is not None
        },
    }
