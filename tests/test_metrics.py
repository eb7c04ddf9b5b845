"""Metric values on hand-built reference/hypothesis pairs, and the ``evaluate`` metric module."""

from __future__ import annotations

import evaluate
import pytest

from ai2text_hf.metrics import error_analysis, error_rates, tone_error_kind, utterance_error_rates
from ai2text_hf.metrics_vi import METRIC_PATH


def test_tone_only_error_counts_as_one_syllable_and_one_tone_error() -> None:
    result = error_analysis(["Việt Nam"], ["viêt nam"])
    assert result["wer"] == pytest.approx(0.5)
    assert result["cer"] == pytest.approx(1 / 8)  # "việt nam" has 8 characters, space included
    assert result["tone_error_rate"] == pytest.approx(0.5)
    assert result["tone_error_share"] == pytest.approx(1.0)
    assert result["tone_only_share"] == pytest.approx(1.0)
    assert result["top_errors"] == [{"reference": "việt", "hypothesis": "viêt", "count": 1}]
    assert result["char_confusions"] == [{"reference": "ệ", "hypothesis": "ê", "count": 1}]


@pytest.mark.parametrize(
    ("reference", "hypothesis", "kind"),
    [
        ("việt", "viêt", "tone"),
        ("mà", "má", "tone"),
        ("đường", "dương", "diacritic"),
        ("năm", "nam", "diacritic"),
        ("ơn", "ớn", "tone"),
        ("nam", "lam", None),
        ("nam", "nam", None),
        ("hoa", "hoan", None),
    ],
)
def test_tone_error_kind_separates_tone_marks_letter_diacritics_and_other_errors(reference, hypothesis, kind) -> None:
    assert tone_error_kind(reference, hypothesis) == kind


def test_other_substitutions_are_not_tone_errors() -> None:
    result = error_analysis(["xin chào bạn"], ["sin chào bạn"])
    assert result["wer"] == pytest.approx(1 / 3)
    assert result["tone_error_rate"] == 0.0 and result["tone_error_share"] == 0.0


def test_empty_hypotheses_are_all_deletions() -> None:
    result = error_analysis(["xin chào", "một hai ba"], ["", ""])
    assert result["wer"] == 1.0 and result["cer"] == 1.0 and result["accuracy"] == 0.0
    assert result["deletions"] == 1.0 and result["substitutions"] == 0.0 and result["insertions"] == 0.0
    assert result["sentence_accuracy"] == 0.0
    assert result["counts"]["deletions"] == 5
    assert {e["hypothesis"] for e in result["top_errors"]} == {""}


def test_empty_references_are_skipped_and_counted() -> None:
    result = error_analysis(["", "xin chào"], ["ồn ào", "xin chào"])
    assert result["wer"] == 0.0 and result["sentence_accuracy"] == 1.0
    assert result["counts"]["utterances"] == 1 and result["counts"]["skipped_empty_references"] == 1
    assert utterance_error_rates("", "ồn ào") == {"wer": 1.0, "cer": 1.0}


def test_error_type_shares_of_a_hand_aligned_pair() -> None:
    # a b c d -> a x c d e: one substitution (b -> x), one insertion (e), four reference syllables.
    result = error_analysis(["an bình có đủ"], ["an xinh có đủ em"])
    assert result["wer"] == pytest.approx(2 / 4)
    assert (result["substitutions"], result["deletions"], result["insertions"]) == pytest.approx((0.5, 0.0, 0.5))
    assert result["counts"]["substitutions"] == 1 and result["counts"]["insertions"] == 1


def test_case_punctuation_and_tone_placement_are_not_errors() -> None:
    result = error_analysis(["Hòa bình, Việt Nam!"], ["hoà bình việt nam"])
    assert result["wer"] == 0.0 and result["cer"] == 0.0 and result["sentence_accuracy"] == 1.0


def test_corpus_rates_match_error_rates_and_count_repeated_errors() -> None:
    references = ["việt nam đẹp lắm", "xin chào việt nam", "hôm nay trời đẹp", "tôi là sinh viên"]
    hypotheses = ["viêt nam đẹp", "sin chào viêt nam", "hôm nay trời đẹp", "tôi là sinh viên nhé"]
    result = error_analysis(references, hypotheses)
    assert result["wer"] == pytest.approx(error_rates(references, hypotheses)["wer"])
    assert result["cer"] == pytest.approx(error_rates(references, hypotheses)["cer"])
    assert result["top_errors"][0] == {"reference": "việt", "hypothesis": "viêt", "count": 2}
    assert result["sentence_accuracy"] == pytest.approx(0.25)
    assert result["substitutions"] + result["deletions"] + result["insertions"] == pytest.approx(1.0)


def test_per_speaker_rates_pool_each_speakers_utterances() -> None:
    result = error_analysis(
        ["một hai", "ba bốn năm sáu", "bảy tám"], ["một hai", "ba bốn", "bảy tám"], speakers=["an", "an", "bình"]
    )
    assert result["per_speaker"]["an"] == {"wer": pytest.approx(2 / 6), "cer": pytest.approx(8 / 21), "num_samples": 2}
    assert result["per_speaker"]["bình"]["wer"] == 0.0
    assert error_analysis(["một"], ["một"])["per_speaker"] == {}


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_analysis(["a", "b"], ["a"])


def test_evaluate_module_loads_offline_and_gives_the_package_numbers() -> None:
    metric = evaluate.load(METRIC_PATH)
    references, predictions = ["Việt Nam", "xin chào"], ["viêt nam", "xin chào"]
    assert metric.compute(predictions=predictions, references=references) == error_rates(references, predictions)
    detailed = metric.compute(predictions=predictions, references=references, detailed=True, speakers=["a", "b"])
    assert detailed == error_analysis(references, predictions, speakers=["a", "b"])
