"""Tune the beam search's LM weight and word score on a held-out split of a prepared dataset.

The best weights belong to a pair (acoustic model, LM): a sharper model needs less help from the LM,
a bigger LM earns more weight. The defaults of :class:`~ai2text_hf.decoding.DecodingOptions` are a
starting point; this searches a grid on a held-out split (never the test split: the weights would be
fitted to what they are scored on) and stores the LM with the winner (``decoding.json``) in the model
folder's ``language_model/``, which decoding then uses by default wherever weights are not given
explicitly. The model runs once; every grid point decodes the same posteriors, so a grid costs decoding
time only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..data.loading import load_scoring_split
from ..decoding import DecodingOptions, build_decoder
from ..decoding.lm import ARPA_NAME, model_lm_folder, resolve_arpa, resolve_lm_file, store_in_model
from ..inference import Transcriber, duration_batches
from ..language_model_ai2text import check_vocabulary
from ..metrics import error_rates

# Around the untuned defaults (0.5, 3.0); tuned word scores rise with the LM's text, so the grid reaches 9
# (docs/results.md).
DEFAULT_LM_WEIGHTS = (0.5, 0.75, 1.0, 1.25, 1.5)
DEFAULT_WORD_SCORES = (1.5, 3.0, 4.5, 6.0, 7.5, 9.0)

Posteriors = list[tuple[list[int], torch.Tensor, torch.Tensor]]


def split_posteriors(transcriber: Transcriber, dataset) -> Posteriors:
    """``(dataset indices, logits, output lengths)`` of every duration batch of a numpy-formatted split."""
    durations = [float(d) for d in dataset["duration"]]
    return [
        (batch, *transcriber.logits(dataset[batch]["input_features"]))
        for batch in duration_batches(durations, transcriber.max_batch_seconds)
    ]


def decode_posteriors(transcriber: Transcriber, posteriors: Posteriors, options: DecodingOptions) -> list[str]:
    """The text of every utterance of ``posteriors`` decoded with ``options``, in dataset order."""
    decoder = build_decoder(transcriber.tokenizer, options)
    texts: dict[int, str] = {}
    for indices, logits, lengths in posteriors:
        for index, decoded in zip(indices, decoder.decode(logits, lengths, transcriber.seconds_per_frame, False)):
            texts[index] = decoded.text
    return [texts[i] for i in range(len(texts))]


def _same_arpa(lm: Path, own: Path) -> bool:
    """Whether ``lm`` is the LM the model folder already holds (e.g. rebuilt from the same text)."""
    own_arpa = own / ARPA_NAME
    return own_arpa.is_file() and resolve_arpa(lm).read_bytes() == own_arpa.read_bytes()


def tune_lm_weights(
    model_dir: str | Path,
    dataset_dir: str | Path,
    lm: str | Path | None = None,
    split: str = "validation",
    beam_width: int = 50,
    lm_weights: Sequence[float] | None = None,
    word_scores: Sequence[float] | None = None,
    metric: str = "cer",
    limit: int | None = None,
    write: bool = True,
) -> dict:
    """Decode ``split`` at every (lm_weight, word_score) of the grid (the defaults when None) with ``lm`` (default:
    the model folder's own); return the best point and the whole grid, and (with ``write``) store the LM with them
    (``decoding.json``) in the model folder's ``language_model/``."""
    if split == "test":
        raise ValueError("Tune on the validation split (or another held-out one), not on test: it is what you report.")
    if metric not in ("cer", "wer"):
        raise ValueError(f"metric must be 'cer' or 'wer', got '{metric}'")
    model_dir, dataset_dir = Path(model_dir), Path(dataset_dir)
    own = model_lm_folder(model_dir)
    lm_dir = Path(lm) if lm else own
    if not lm and not own.is_dir():
        raise FileNotFoundError(
            f"{model_dir} has no language model ({own}): build one into it with `ai2text lm build --model "
            f"{model_dir} --text <text files>`, or name one with --lm."
        )
    resolve_lm_file(lm_dir)  # clear errors before the model runs
    if write and own.exists() and lm_dir.resolve() != own.resolve() and not _same_arpa(lm_dir, own):
        raise FileExistsError(
            f"{model_dir} already has a language model ({own}); tuning {lm_dir} would replace it. Tune the model's "
            f"own LM (leave out --lm), or move {own} away first."
        )
    transcriber = Transcriber(model_dir, decoding=DecodingOptions())
    if lm_dir.is_dir():
        check_vocabulary(lm_dir, transcriber.tokenizer)
    dataset = load_scoring_split(
        dataset_dir, split, transcriber.feature_extractor, transcriber.folder.architecture, limit, "tune on"
    ).dataset
    references = list(dataset["text"])
    tone = transcriber.folder.tone_placement
    posteriors = split_posteriors(transcriber, dataset)

    lm_weights, word_scores = tuple(lm_weights or DEFAULT_LM_WEIGHTS), tuple(word_scores or DEFAULT_WORD_SCORES)
    start = time.perf_counter()
    greedy = error_rates(references, decode_posteriors(transcriber, posteriors, DecodingOptions()), tone)
    grid = []
    for lm_weight in lm_weights:
        for word_score in word_scores:
            options = DecodingOptions(beam_width=beam_width, lm=str(lm_dir), lm_weight=lm_weight, word_score=word_score)
            rates = error_rates(references, decode_posteriors(transcriber, posteriors, options), tone)
            grid.append({"lm_weight": lm_weight, "word_score": word_score, **rates})
    other = "wer" if metric == "cer" else "cer"
    best = min(grid, key=lambda point: (point[metric], point[other]))
    result = {
        "lm_weight": best["lm_weight"],
        "word_score": best["word_score"],
        "tuned_on": {
            "model": str(model_dir),
            "dataset": str(dataset_dir),
            "split": split,
            "utterances": len(references),
            "beam_width": beam_width,
            "metric": metric,
        },
        # Grid axes whose best value is an end of a range of several: the optimum may lie beyond it.
        "on_edge": [
            name
            for name, values in (("lm_weight", lm_weights), ("word_score", word_scores))
            if len(values) > 1 and best[name] in (min(values), max(values))
        ],
        "greedy": greedy,
        "best": {"wer": best["wer"], "cer": best["cer"]},
        "grid": grid,
        "seconds": round(time.perf_counter() - start, 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if write:
        result["stored_in"] = str(store_in_model(lm_dir, model_dir, result, transcriber.tokenizer))
    return result
