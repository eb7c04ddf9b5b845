"""Tune the beam search's LM weight and word score on a held-out split of a prepared dataset.

The best weights belong to a pair (acoustic model, LM): a sharper model needs less help from the LM,
a bigger LM earns more weight. The defaults of :class:`~ai2text_hf.decoding.DecodingOptions` are a
starting point; this searches a grid on the val split (never the test split: the weights would be
fitted to what they are scored on) and writes the winner into the LM folder's ``decoding.json``,
which ``--lm`` then uses wherever weights are not given explicitly. The model runs once; every grid
point decodes the same posteriors, so a grid costs decoding time only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..decoding import DecodingOptions, build_decoder
from ..decoding.lm import TUNED_NAME, resolve_arpa
from ..inference import Transcriber, duration_batches
from ..metrics import error_rates
from .evaluate import load_split

# Around the untuned defaults (0.5, 3.0). Demo models tuned to lm_weight 0.75-1.0; their word score rose with the
# LM text (3-4.5 on the 1,417-sentence corpus, 6-9 on the 5,417-sentence one), so the grid reaches 9.
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


def tune_lm_weights(
    model_dir: str | Path,
    dataset_dir: str | Path,
    lm: str | Path,
    split: str = "val",
    beam_width: int = 50,
    lm_weights: Sequence[float] | None = None,
    word_scores: Sequence[float] | None = None,
    metric: str = "cer",
    limit: int | None = None,
    write: bool = True,
) -> dict:
    """Decode ``split`` at every (lm_weight, word_score) of the grid (the defaults when None); return the best
    point and the whole grid, and (with ``write``) store them as ``decoding.json`` in the LM folder."""
    if split == "test":
        raise ValueError("Tune on the val split (or another held-out split), not on test: it is what you report.")
    if metric not in ("cer", "wer"):
        raise ValueError(f"metric must be 'cer' or 'wer', got '{metric}'")
    lm_dir = Path(lm)
    resolve_arpa(lm_dir)  # a clear error before the model runs
    if write and not lm_dir.is_dir():
        raise ValueError(f"--lm {lm} is a file: tuned weights are stored in an LM folder (from `ai2text lm build`).")
    model_dir, dataset_dir = Path(model_dir), Path(dataset_dir)
    transcriber = Transcriber(model_dir)
    dataset = load_split(transcriber, dataset_dir, split, limit, purpose="tune on")
    references = list(dataset["text"])
    tone = transcriber.tokenizer.tone_placement
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
        (lm_dir / TUNED_NAME).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
