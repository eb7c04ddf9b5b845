"""Syllable n-gram language models: interpolated modified Kneser-Ney, written as ARPA.

KenLM's estimation tool (``lmplz``) is neither on PyPI nor in Debian, so the model is estimated here
the way ``lmplz`` does it (Chen & Goodman's modified Kneser-Ney, interpolated, no pruning; Heafield et
al. 2013) and written as an ARPA file, which the KenLM query code inside flashlight-text (the
decoder's) reads. Vietnamese orthographic words are syllables, so the units are the space-separated
words of the normalised text: the same strings the CTC model spells between word delimiters.

Estimation, for order N:

* adjusted counts ``a``: raw counts for N-grams and for n-grams starting with ``<s>``, otherwise the
  number of distinct words seen to the left (the Kneser-Ney continuation count);
* discounts per order from the counts-of-counts ``t_k`` of adjusted counts:
  ``D(k) = k - (k + 1) * Y * t_{k+1} / t_k`` with ``Y = t_1 / (t_1 + 2 t_2)``, for k = 1, 2, 3+
  (``fallback_discounts`` where a tiny corpus leaves them undefined, as ``lmplz --discount_fallback``);
* ``p(w | h) = (a(hw) - D(a(hw))) / S(h) + b(h) p(w | h')`` with ``S(h) = sum_x a(hx)``,
  ``b(h) = (D(1) N_1(h) + D(2) N_2(h) + D(3) N_3+(h)) / S(h)``, ``h'`` the context without its first
  word, and the unigram level interpolated with the uniform distribution over the vocabulary
  (``<unk>`` and ``</s>`` included, ``<s>`` excluded: it is never predicted).

ARPA stores the interpolated ``p`` of every seen n-gram and ``b(h)`` as the back-off weight of each
context, so standard back-off lookup gives exactly the interpolated distribution.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..language_model_ai2text import (
    ARPA_NAME,
    BINARY_NAME,
    INFO_NAME,
    LM_FOLDER,
    TUNED_NAME,
    UNK,
    language_model_file,
    read_info,
    vocabulary_fingerprint,
)
from ..normalization_vi import normalize_text
from .kenlm_binary import refresh_binary

# Model files that decode with language_model/ in a trust_remote_code pipeline, and how config.json names them.
PIPELINE_FILES = ("pipeline_ai2text.py", "language_model_ai2text.py", "feature_extraction_ai2text.py")
CUSTOM_PIPELINES = {
    "automatic-speech-recognition": {
        "impl": "pipeline_ai2text.AI2TextCTCPipeline",
        "pt": ["AutoModelForCTC"],
        "tf": [],
        "type": "audio",
    }
}

BOS, EOS = "<s>", "</s>"
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
_LOG10_ZERO = -99.0  # ARPA's "probability zero" (used for <s>, which is never predicted)

Ngram = tuple[str, ...]


def read_text_lines(path: str | Path, splits: Sequence[str] | None = None) -> list[str]:
    """Sentences of a text file: one per line; a ``.tsv`` gives its first column; a ``.csv`` with a
    ``transcript`` or ``text`` column (a metadata CSV) gives that column, only from rows whose ``split`` is in
    ``splits`` when given (so an LM can be built from the train rows of a corpus without its test sentences).

    A metadata CSV gives each distinct transcript once: in read speech many speakers read the same prompt, and
    counting every reading multiplies the n-gram counts without adding text, which leaves Kneser-Ney no
    singletons to estimate its discounts from."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            column = next((c for c in ("transcript", "text", "sentence") if c in (reader.fieldnames or [])), None)
            if column is None:
                raise ValueError(f"{path} has no transcript, text or sentence column: {reader.fieldnames}")
            if splits is not None and "split" not in (reader.fieldnames or []):
                raise ValueError(f"{path} has no split column to select {list(splits)} from")
            return list(dict.fromkeys(row[column] for row in reader if splits is None or row["split"] in splits))
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if path.suffix.lower() == ".tsv":
        lines = [line.split("\t", 1)[0] for line in lines]
        if lines and lines[0].strip().lower() in ("sentence", "text"):
            lines = lines[1:]
    return lines


def syllable_sentences(
    lines: Iterable[str], tone_placement: str = "classic", exclude: Iterable[str] = ()
) -> tuple[list[list[str]], int]:
    """Normalised syllable lists of the non-empty ``lines``, minus any whose normalised text is in
    ``exclude`` (e.g. test transcripts). Returns the sentences and how many were excluded."""
    excluded = {normalize_text(line, tone_placement) for line in exclude} - {""}
    sentences, dropped = [], 0
    for line in lines:
        text = normalize_text(line, tone_placement)
        if not text:
            continue
        if text in excluded:
            dropped += 1
            continue
        sentences.append(text.split())
    return sentences, dropped


def kneser_ney_discounts(counts_of_counts: Sequence[int]) -> tuple[float, float, float] | None:
    """``(D1, D2, D3+)`` from ``t_1..t_4``, or ``None`` where the estimate is undefined or out of range."""
    t1, t2, t3, t4 = counts_of_counts
    if min(t1, t2, t3, t4) == 0:
        return None
    y = t1 / (t1 + 2 * t2)
    discounts = tuple(k - (k + 1) * y * t_next / t_k for k, t_k, t_next in ((1, t1, t2), (2, t2, t3), (3, t3, t4)))
    if any(not 0 < d <= k for k, d in enumerate(discounts, start=1)):
        return None
    return discounts  # type: ignore[return-value]


@dataclass
class NgramModel:
    """An estimated back-off model: ``probs[n - 1]`` maps n-grams to log10 p(last | rest), ``backoffs[n - 1]``
    maps contexts to log10 back-off weights."""

    order: int
    probs: list[dict[Ngram, float]]
    backoffs: list[dict[Ngram, float]]
    discounts: list[tuple[float, float, float]]
    estimated_discounts: list[bool]  # False where the fallback was used

    def log10_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """ARPA back-off lookup: the longest seen n-gram, times the back-off weights of longer contexts."""
        context = tuple(context)[-(self.order - 1) :] if self.order > 1 else ()
        if (word,) not in self.probs[0]:
            word = UNK
        penalty = 0.0
        while True:
            gram = (*context, word)
            if gram in self.probs[len(gram) - 1]:
                return penalty + self.probs[len(gram) - 1][gram]
            penalty += self.backoffs[len(context) - 1].get(context, 0.0)
            context = context[1:]

    def write_arpa(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as out:
            out.write("\\data\\\n")
            for n, grams in enumerate(self.probs, start=1):
                out.write(f"ngram {n}={len(grams)}\n")
            for n, grams in enumerate(self.probs, start=1):
                out.write(f"\n\\{n}-grams:\n")
                backoffs = self.backoffs[n - 1] if n < self.order else {}
                for gram in sorted(grams):
                    line = f"{grams[gram]:.7g}\t{' '.join(gram)}"
                    if gram in backoffs:
                        line += f"\t{backoffs[gram]:.7g}"
                    out.write(line + "\n")
            out.write("\n\\end\\\n")


def _log10(value: float) -> float:
    return math.log10(value) if value > 0 else _LOG10_ZERO


def _raw_counts(sentences: Iterable[Sequence[str]], order: int) -> list[Counter]:
    """Counts of every n-gram (n <= order) of the ``<s> ... </s>`` padded sentences; ``<s>`` only ever
    starts an n-gram."""
    counts = [Counter() for _ in range(order)]
    for words in sentences:
        padded = (BOS, *words, EOS)
        for end in range(1, len(padded)):
            for n in range(1, min(order, end + 1) + 1):
                counts[n - 1][padded[end - n + 1 : end + 1]] += 1
    counts[0][(BOS,)] = 0  # a context only
    return counts


def _adjusted_counts(raw: list[Counter], order: int) -> list[dict[Ngram, int]]:
    adjusted: list[dict[Ngram, int]] = []
    for n in range(1, order + 1):
        if n == order:
            adjusted.append(dict(raw[n - 1]))
            continue
        left = Counter(gram[1:] for gram in raw[n])  # distinct left extensions
        adjusted.append({gram: (c if gram[0] == BOS else left[gram]) for gram, c in raw[n - 1].items()})
    return adjusted


def estimate_kneser_ney(
    sentences: Iterable[Sequence[str]],
    order: int = 3,
    fallback_discounts: tuple[float, float, float] = FALLBACK_DISCOUNTS,
) -> NgramModel:
    """Interpolated modified Kneser-Ney model of ``sentences`` (lists of words); see the module docstring."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    raw = _raw_counts(sentences, order)
    if sum(raw[0].values()) == 0:
        raise ValueError("No text to estimate a language model from.")
    adjusted = _adjusted_counts(raw, order)
    vocab_size = len({g for g in adjusted[0] if g != (BOS,)} | {(UNK,)})
    probs: list[dict[Ngram, float]] = []  # interpolated probabilities, linear
    backoffs: list[dict[Ngram, float]] = []
    discounts, estimated = [], []
    for n in range(1, order + 1):
        grams = {g: a for g, a in adjusted[n - 1].items() if g != (BOS,)}
        counts_of_counts = Counter(grams.values())
        d = kneser_ney_discounts([counts_of_counts[k] for k in (1, 2, 3, 4)])
        estimated.append(d is not None)
        d = d or fallback_discounts
        discounts.append(d)
        totals: dict[Ngram, float] = defaultdict(float)
        mass: dict[Ngram, float] = defaultdict(float)
        for gram, a in grams.items():
            totals[gram[:-1]] += a
            mass[gram[:-1]] += d[min(a, 3) - 1] if a > 0 else 0.0
        weights = {h: mass[h] / totals[h] for h in totals}
        level = {}
        if n == 1:
            grams.setdefault((UNK,), 0)
        for gram, a in grams.items():
            h = gram[:-1]
            discounted = (a - d[min(a, 3) - 1]) / totals[h] if a > 0 else 0.0
            lower = probs[n - 2][gram[1:]] if n > 1 else 1.0 / vocab_size
            level[gram] = discounted + weights[h] * lower
        probs.append(level)
        if n > 1:
            backoffs.append(weights)
    if order > 1:  # <s> is a context (it has a back-off weight) but never predicted
        probs[0][(BOS,)] = 0.0
    return NgramModel(
        order=order,
        probs=[{g: _log10(p) for g, p in level.items()} for level in probs],
        backoffs=[{h: _log10(b) for h, b in level.items()} for level in backoffs],
        discounts=discounts,
        estimated_discounts=estimated,
    )


def build_lm(
    text_files: Sequence[str | Path],
    output_dir: str | Path,
    order: int = 3,
    tone_placement: str = "classic",
    exclude_files: Sequence[str | Path] = (),
    splits: Sequence[str] | None = None,
    built_for: dict | None = None,
    binary: str = "auto",
) -> dict:
    """Estimate a syllable n-gram model from ``text_files`` and write ``lm.arpa`` and ``lm.json`` (what it was
    built from, sizes, discounts) into ``output_dir``. Sentences of ``exclude_files`` (e.g. a test split's
    transcripts) are left out, so a WER measured with the LM is not flattered by it; ``splits`` keeps only those
    rows of metadata CSVs. ``built_for`` (:func:`model_fingerprint`) records the model whose vocabulary the LM is
    for: decoding with another refuses it. ``binary`` (auto, yes, no): also write the KenLM binary
    (:func:`~ai2text_hf.decoding.kenlm_binary.refresh_binary`)."""
    lines = [line for path in text_files for line in read_text_lines(path, splits)]
    exclude = [line for path in exclude_files for line in read_text_lines(path)]
    sentences, dropped = syllable_sentences(lines, tone_placement, exclude)
    model = estimate_kneser_ney(sentences, order)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.write_arpa(output_dir / ARPA_NAME)
    binary_file = refresh_binary(output_dir, output_dir / ARPA_NAME, binary)
    info = {
        "format": "arpa",
        "unit": "syllable",
        "order": order,
        "smoothing": "interpolated modified Kneser-Ney",
        "tone_placement": tone_placement,
        "sources": [str(p) for p in text_files],
        "excluded_from": [str(p) for p in exclude_files],
        "sentences": len(sentences),
        "excluded_sentences": dropped,
        "tokens": sum(len(s) for s in sentences),
        "vocabulary": len(model.probs[0]) - (1 if order > 1 else 0),
        "ngrams": [len(level) for level in model.probs],
        "discounts": [list(d) for d in model.discounts],
        "estimated_discounts": model.estimated_discounts,
        "kenlm_binary": binary_file is not None,
        **({"tokenizer": built_for} if built_for else {}),
    }
    (output_dir / INFO_NAME).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return info


def resolve_lm_file(path: str | Path) -> Path:
    """The file a decoder loads for ``path``: an LM folder's KenLM binary or ARPA file (:func:`language_model_file`),
    or ``path`` itself if it is a file."""
    path = Path(path)
    found = language_model_file(path) if path.is_dir() else (path if path.is_file() else None)
    if found is None:
        raise FileNotFoundError(
            f"No language model at {path}: expected an ARPA file or a folder with {ARPA_NAME} (or {BINARY_NAME})."
        )
    return found


def resolve_arpa(path: str | Path) -> Path:
    """The ARPA file of an LM folder written by :func:`build_lm`, or ``path`` itself if it is a file."""
    path = Path(path)
    arpa = path / ARPA_NAME if path.is_dir() else path
    if not arpa.is_file():
        raise FileNotFoundError(f"No language model at {path}: expected an ARPA file or a folder with {ARPA_NAME}.")
    return arpa


def model_fingerprint(model_dir: str | Path) -> dict:
    """The vocabulary fingerprint of a model folder's tokenizer, with the folder's path, for ``built_for``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return {"model": str(model_dir), **vocabulary_fingerprint(tokenizer)}


def model_lm_folder(model_dir: str | Path) -> Path:
    """Where a model folder keeps its LM: ``<model_dir>/language_model``."""
    return Path(model_dir) / LM_FOLDER


def is_model_lm_folder(path: str | Path) -> bool:
    """Whether ``path`` is the ``language_model/`` folder of a model folder (a folder with a config.json)."""
    path = Path(path)
    return path.name == LM_FOLDER and (path.parent / "config.json").is_file()


def register_lm_pipeline(model_dir: str | Path) -> None:
    """Copy the remote-code pipeline files into ``model_dir`` and name the pipeline in its config.json
    (``custom_pipelines``), so ``pipeline(..., trust_remote_code=True)`` decodes with its ``language_model/``."""
    model_dir = Path(model_dir)
    package = Path(__file__).resolve().parents[1]
    for name in PIPELINE_FILES:
        shutil.copyfile(package / name, model_dir / name)
    path = model_dir / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("custom_pipelines") != CUSTOM_PIPELINES:
        config["custom_pipelines"] = CUSTOM_PIPELINES
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def store_in_model(lm: str | Path, model_dir: str | Path, tuned: dict | None = None, tokenizer=None) -> Path:
    """Put the LM folder (or ARPA file) ``lm`` into ``<model_dir>/language_model`` with the model's vocabulary
    recorded (from ``tokenizer``, the model's, when already loaded) and ``tuned`` weights (``decoding.json``), and
    register the pipeline that uses it. Returns the folder."""
    lm, target = Path(lm), model_lm_folder(model_dir)
    arpa = resolve_arpa(lm)
    target.mkdir(exist_ok=True)
    if arpa.resolve() != (target / ARPA_NAME).resolve():
        shutil.copyfile(arpa, target / ARPA_NAME)
        refresh_binary(target, target / ARPA_NAME)
    info = read_info(lm) if lm.is_dir() else {"format": "arpa", "sources": [str(lm)]}
    info["tokenizer"] = (
        {"model": str(model_dir), **vocabulary_fingerprint(tokenizer)} if tokenizer else model_fingerprint(model_dir)
    )
    (target / INFO_NAME).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if tuned is not None:
        (target / TUNED_NAME).write_text(json.dumps(tuned, indent=2) + "\n", encoding="utf-8")
    register_lm_pipeline(model_dir)
    return target
