"""``evaluate_split`` result files, the terminal and HTML reports, ``ai2text compare`` and the guide's script."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, TrainedModel

from ai2text_hf.cli import main
from ai2text_hf.evaluation import evaluate_split, format_comparison, format_report
from ai2text_hf.evaluation.html import render_html_report

RESULT_KEYS = {
    "wer", "cer", "accuracy", "sentence_accuracy", "rtf", "substitutions", "deletions", "insertions",
    "tone_error_rate", "tone_error_share", "top_errors", "per_speaker", "char_confusions", "num_samples", "hours",
    "model", "data_version", "decoding", "split", "wer_unit", "mean_confidence",
}  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(trained_model: TrainedModel, tmp_path_factory) -> tuple[Path, dict, Path]:
    """A greedy evaluation of the fixture's test split, with HTML, from a copy of the model folder."""
    root = tmp_path_factory.mktemp("evaluated")
    model = root / "run" / "model"
    shutil.copytree(trained_model.model_dir, model)
    result = evaluate_split(model, trained_model.dataset_dir, "test", html=True)
    return model, result.metrics, result.output_dir


def test_results_hold_every_metric_as_fractions(evaluated, trained_model: TrainedModel) -> None:
    model, metrics, output_dir = evaluated
    assert output_dir == model.parent / "eval" / "test"  # runs/<name>/eval/<split> by default
    saved = json.loads((output_dir / "eval_results.json").read_text(encoding="utf-8"))
    assert RESULT_KEYS <= set(saved) and saved["wer_unit"] == "syllable"
    for key in ("wer", "cer", "accuracy", "sentence_accuracy", "tone_error_rate", "substitutions", "mean_confidence"):
        assert 0.0 <= saved[key] <= 1.0, key
    assert saved["accuracy"] == pytest.approx(1 - saved["wer"])
    assert saved["substitutions"] + saved["deletions"] + saved["insertions"] == pytest.approx(1.0)
    assert saved["decoding"] == {"method": "greedy"} and saved["data_version"]["source_sha256"]
    assert set(saved["per_speaker"]) == {row["speaker_id"] for row in trained_model.rows("test")}
    assert all(e["count"] >= 1 and (e["reference"] or e["hypothesis"]) for e in saved["top_errors"])


def test_a_dataset_prepared_on_the_fly_scores_as_its_stored_features(evaluated, trained_model, tmp_path) -> None:
    from ai2text_hf.data.prepare import prepare_dataset

    audio = tmp_path / "audio-dataset"
    prepare_dataset(trained_model.metadata, audio, on_the_fly=True, progress=False)
    model, metrics, output_dir = evaluated
    result = evaluate_split(model, audio, "test", output_dir=tmp_path / "eval")
    assert result.metrics["num_samples"] == metrics["num_samples"]
    assert result.metrics["cer"] == pytest.approx(metrics["cer"], abs=1e-9)
    assert _hypotheses(tmp_path / "eval") == _hypotheses(output_dir)


def _hypotheses(output_dir: Path) -> list[str]:
    with (output_dir / "predictions.csv").open(encoding="utf-8", newline="") as handle:
        return [row["hypothesis"] for row in csv.DictReader(handle)]


def test_predictions_keep_their_columns(evaluated) -> None:
    _, metrics, output_dir = evaluated
    with open(output_dir / "predictions.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["id", "reference", "hypothesis", "cer", "wer"]
    assert len(rows) == metrics["num_samples"]


def test_evaluations_stay_in_the_run_folder_one_folder_per_decoding(evaluated, trained_model: TrainedModel) -> None:
    model, _, output_dir = evaluated
    before = sorted(p.name for p in model.iterdir())
    options = ["--model", str(model), "--dataset", str(trained_model.dataset_dir), "--limit", "3"]
    assert main(["evaluate", *options, "--beam-width", "4"]) == 0
    beam = json.loads((model.parent / "eval" / "test-beam4" / "eval_results.json").read_text(encoding="utf-8"))
    assert beam["num_samples"] == 3 and beam["decoding"]["beam_width"] == 4
    assert json.loads((output_dir / "eval_results.json").read_text(encoding="utf-8"))["decoding"]["method"] == "greedy"
    assert sorted(p.name for p in model.iterdir()) == before  # nothing written into the model folder


def test_terminal_report_follows_the_guide(evaluated) -> None:
    report = format_report(evaluated[1])
    for line in ("Evaluation Results:", "Test Set: 20 samples", "Word Error Rate (WER, syllables):",
                 "Character Error Rate (CER):", "Accuracy (1 - WER):", "Sentence Accuracy:",
                 "Tone/Diacritic Error Rate:", "x realtime", "Substitutions:", "Deletions:", "Insertions:",
                 "Top Errors:", "1. \"", "occurrence", "Per Speaker"):  # fmt: skip
        assert line in report, line


def test_html_report_is_self_contained_with_every_section(evaluated) -> None:
    page = (evaluated[2] / "report.html").read_text(encoding="utf-8")
    for section in ("Error types", "CER by utterance duration", "Per speaker", "character substitutions",
                    "Top errors", "Worst utterances"):  # fmt: skip
        assert section in page, section
    assert page.count("<svg") == 3 and 'class="sub"' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert "<script" not in page


def test_html_marks_substitutions_deletions_and_insertions() -> None:
    metrics = {
        "wer": 0.5, "cer": 0.2, "accuracy": 0.5, "sentence_accuracy": 0.0, "tone_error_rate": 0.25, "rtf": 0.1,
        "num_samples": 1, "hours": 0.001, "substitutions": 0.5, "deletions": 0.25, "insertions": 0.25,
        "tone_error_share": 0.5, "top_errors": [], "char_confusions": [], "per_speaker": {},
    }  # fmt: skip
    row = {"id": "u1", "reference": "xin chào việt nam", "hypothesis": "xin chao viêt nam nhé <b>", "cer": 0.2,
           "wer": 0.75, "duration": 2.0, "confidence": 0.5}  # fmt: skip
    page = render_html_report(metrics, [row])
    assert '<span class="sub">chào</span>' in page and '<span class="sub">viêt</span>' in page
    assert '<span class="ins">nhé</span>' in page and '<span class="ins">&lt;b&gt;</span>' in page


def test_compare_shows_changes_and_warns_on_different_data(capsys, evaluated, tmp_path) -> None:
    _, metrics, output_dir = evaluated
    better = {**metrics, "wer": metrics["wer"] - 0.1, "decoding": {"method": "beam", "beam_width": 10}}
    table = format_comparison(metrics, better)
    assert "-10.00 pts better" in table and "beam 10" in table and "Warning" not in table
    other = {**better, "split": "val"}
    assert "not directly comparable" in format_comparison(metrics, other)
    (tmp_path / "b.json").write_text(json.dumps(better), encoding="utf-8")
    assert main(["compare", str(output_dir), str(tmp_path / "b.json")]) == 0
    assert "WER (syllables)" in capsys.readouterr().out
    assert main(["compare", str(output_dir), str(tmp_path / "missing.json")]) == 2


def _guide_script():
    spec = importlib.util.spec_from_file_location("guide_evaluate", REPO / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_guide_flags_map_onto_the_cli() -> None:
    translate = _guide_script().translate
    assert translate(["--model_path", "m", "--test_data", "d", "--split", "val", "--html"]) == [
        "evaluate", "--model", "m", "--dataset", "d", "--split", "val", "--html"
    ]  # fmt: skip
    assert translate(["--model_path", "m", "--audio_file", "a.wav", "--use_beam_search", "--beam_width", "10"]) == [
        "transcribe", "--model", "m", "--beam-width", "10", "a.wav"
    ]  # fmt: skip
    assert translate(["--model_path", "m", "--audio_file", "a.wav", "--use_beam_search"])[3:5] == ["--beam-width", "10"]


def test_guide_script_transcribes_with_beam_search(capsys, trained_model: TrainedModel) -> None:
    audio = str(trained_model.corpus_dir / trained_model.rows("test")[0]["file_path"])
    args = ["--model_path", str(trained_model.model_dir), "--audio_file", audio, "--use_beam_search", "--json"]
    assert main(_guide_script().translate(args)) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["text"] and 0.0 <= result["confidence"] <= 1.0


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(evaluated, tmp_path) -> None:
    image = pytest.importorskip("PIL.Image")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    screenshot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--window-size=1100,1800", f"--screenshot={screenshot}", (evaluated[2] / "report.html").as_uri()],
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip
    picture = image.open(screenshot).convert("L")
    low, high = picture.getextrema()
    assert picture.size == (1100, 1800) and high - low > 100  # text and bars on a light page, not a blank one
    histogram = picture.histogram()
    assert sum(histogram[:128]) > 0.005 * sum(histogram)  # enough dark pixels to be a rendered report
