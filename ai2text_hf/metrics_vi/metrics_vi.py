"""Vietnamese ASR metrics as a Hugging Face ``evaluate`` module, loadable without the Hub.

``evaluate.load(ai2text_hf.metrics_vi.METRIC_PATH)`` copies this script into evaluate's module cache
and imports it from there, so it imports the package absolutely: the numbers are the ones
``ai2text evaluate`` and training report, from the same code (``ai2text_hf.metrics``).
"""

from __future__ import annotations

import datasets
import evaluate

from ai2text_hf.metrics import error_analysis, error_rates

_DESCRIPTION = """Syllable error rate ("wer": Vietnamese words are space-separated syllables), character error
rate, and with detailed=True the full Vietnamese error analysis: accuracy, sentence accuracy, substitution /
deletion / insertion shares, tone/diacritic error rate and share, top errors, character confusions and
per-speaker rates. References and predictions are normalised alike (case, punctuation, numbers, tone
placement) before scoring. All rates are fractions."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of transcribed texts.
    references: list of reference transcripts.
    tone_placement: "classic" (hòa, default) or "modern" (hoà), as the model's tokenizer.
    detailed: return every metric of `ai2text evaluate` instead of only wer and cer.
    speakers: optional speaker id per utterance, for per-speaker rates (detailed only).
Returns:
    {"wer": float, "cer": float} or, with detailed=True, the full analysis dictionary.
Examples:
    >>> metric = evaluate.load(ai2text_hf.metrics_vi.METRIC_PATH)
    >>> metric.compute(predictions=["viêt nam"], references=["Việt Nam"])
    {'wer': 0.5, 'cer': 0.125}
"""


class MetricsVi(evaluate.Metric):
    """Syllable/character error rates and the tone-aware error analysis of ``ai2text_hf.metrics``."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        tone_placement: str = "classic",
        detailed: bool = False,
        speakers: list[str] | None = None,
    ) -> dict:
        if detailed:
            return error_analysis(references, predictions, tone_placement, speakers=speakers)
        return error_rates(references, predictions, tone_placement)
