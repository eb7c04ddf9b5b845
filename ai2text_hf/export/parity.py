"""How closely an exported model follows the PyTorch model it came from.

Both run through a :class:`Transcriber` on the same feature batches: the largest absolute logit
difference over valid frames, whether greedy transcripts are identical, the model-only time of each
and, when references are known, WER/CER of both.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from ..inference import Transcriber, duration_batches
from ..metrics import error_rates


def _timed_logits(transcriber: Transcriber, features: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, float]:
    start = time.perf_counter()
    logits, lengths = transcriber.logits(features)
    return logits, lengths, time.perf_counter() - start


def compare_models(
    reference: Transcriber,
    exported: Transcriber,
    features: Sequence[np.ndarray],
    references: Sequence[str] | None = None,
    max_batch_seconds: float = 60.0,
) -> dict:
    """Parity of ``exported`` against ``reference`` on unpadded model inputs ``features``.

    Batches are made by duration as in evaluation; each backend runs every batch once untimed first
    (onnxruntime plans its memory on first use), so the times compare steady-state speed.
    """
    durations = [len(f) * reference.folder.seconds_per_input for f in features]
    batches = [[features[i] for i in batch] for batch in duration_batches(durations, max_batch_seconds)]
    order = [i for batch in duration_batches(durations, max_batch_seconds) for i in batch]
    for batch in batches[:1]:
        reference.logits(batch), exported.logits(batch)
    max_diff, ref_seconds, exp_seconds = 0.0, 0.0, 0.0
    ref_texts: list[str] = []
    exp_texts: list[str] = []
    for batch in batches:
        ref_logits, lengths, seconds = _timed_logits(reference, batch)
        ref_seconds += seconds
        exp_logits, exp_lengths, seconds = _timed_logits(exported, batch)
        exp_seconds += seconds
        if not torch.equal(lengths.cpu(), exp_lengths.cpu()):
            raise RuntimeError("The exported model produced other logit lengths than the PyTorch model.")
        valid = torch.arange(ref_logits.shape[1])[None, :] < lengths[:, None]
        max_diff = max(max_diff, float((ref_logits.cpu() - exp_logits.cpu())[valid].abs().max()))
        for model, logits, texts in ((reference, ref_logits, ref_texts), (exported, exp_logits, exp_texts)):
            decoded = model.decoder.decode(logits, lengths, model.seconds_per_frame, word_timestamps=False)
            texts += [d.text for d in decoded]
    identical = sum(a == b for a, b in zip(ref_texts, exp_texts))
    result = {
        "utterances": len(features),
        "audio_seconds": round(sum(durations), 2),
        "max_abs_logit_diff": max_diff,
        "identical_transcripts": identical,
        "all_transcripts_identical": identical == len(features),
        "pytorch_seconds": round(ref_seconds, 4),
        "exported_seconds": round(exp_seconds, 4),
        "speedup": round(ref_seconds / exp_seconds, 3) if exp_seconds else None,
    }
    if references is not None:
        tone = reference.folder.tone_placement
        ordered = [references[i] for i in order]
        before, after = error_rates(ordered, ref_texts, tone), error_rates(ordered, exp_texts, tone)
        result |= {
            "pytorch": before,
            "exported": after,
            "wer_delta": after["wer"] - before["wer"],
            "cer_delta": after["cer"] - before["cer"],
        }
    return result
