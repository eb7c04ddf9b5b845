"""Versions (cache hit, refusal, atomicity), strict / validate-only, auto-split, and the CLI and guide script."""

from __future__ import annotations

import csv
import json
import os
import random
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ai2text_hf.cli import main
from ai2text_hf.data import ValidationFailed, load_prepared, prepare_dataset, read_manifest
from ai2text_hf.data import prepare as prepare_module
from ai2text_hf.data.splits import auto_split, parse_split_ratios

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(1)
HEADER = ["file_path", "transcript", "duration", "split", "speaker_id"]


def _wav(path: Path, seconds: float = 0.8) -> None:
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, 0.3 * np.sin(2 * np.pi * 200 * t) + 0.05 * RNG.standard_normal(t.size), 16000)


def _csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 speakers x 3 utterances, no split column values, one bad row."""
    root = tmp_path_factory.mktemp("versions")
    rows = []
    for speaker in range(12):
        for utt in range(3):
            name = f"s{speaker:02d}_{utt}.wav"
            _wav(root / name, 0.6 + 0.1 * utt)
            rows.append([name, "xin chào", "", "", f"spk{speaker:02d}"])
    rows.append(["missing.wav", "không có", "", "", "spk99"])
    _csv(root / "meta.csv", rows)
    return root


def test_rerun_with_same_inputs_is_up_to_date(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    first = prepare_dataset(corpus / "meta.csv", tmp_path / "v1", progress=False)
    created = read_manifest(tmp_path / "v1")["created"]

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit must not check or featurise audio again")

    monkeypatch.setattr(prepare_module, "_run_checks", no_work)
    again = prepare_dataset(corpus / "meta.csv", tmp_path / "v1", num_proc=2, batch_size=7)
    assert again.cached and not first.cached
    assert "Up to date" in capsys.readouterr().out
    assert again.statistics == first.statistics and again.total_rows == first.total_rows == 37
    assert again.skipped_by_reason == first.skipped_by_reason == {"missing_file": 1}
    assert read_manifest(tmp_path / "v1")["created"] == created  # the version was not touched


def test_cli_rerun_is_answered_without_loading_torch(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The cache hit skips torch and transformers (seconds of imports: most of a small re-run's time)."""
    data = tmp_path / "corpus"
    shutil.copytree(corpus, data)
    args = ["prepare", "--csv", str(data / "meta.csv"), "--output", str(tmp_path / "v1"), "--num-proc", "1"]
    assert main(args) == 0
    script = (
        "import sys; from ai2text_hf.cli import main; code = main(sys.argv[1:]); "
        "print('torch:', 'torch' in sys.modules); sys.exit(code)"
    )
    rerun = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "Up to date" in rerun.stdout and "torch: False" in rerun.stdout
    with open(data / "meta.csv", "a", encoding="utf-8") as handle:
        handle.write("s00_0.wav,xin chào bạn,,,spk00\n")
    capsys.readouterr()
    assert main(args) == 2  # a changed CSV is not reused: the full check refuses it
    assert "source.sha256" in capsys.readouterr().err


def test_changed_inputs_are_refused_unless_overwrite(corpus: Path, tmp_path: Path) -> None:
    prepare_dataset(corpus / "meta.csv", tmp_path / "v1", progress=False)
    with pytest.raises(FileExistsError, match=r"options\.tone_placement.*--overwrite"):
        prepare_dataset(corpus / "meta.csv", tmp_path / "v1", tone_placement="modern", progress=False)
    with pytest.raises(FileExistsError, match=r"filters\.min_duration"):
        prepare_dataset(corpus / "meta.csv", tmp_path / "v1", min_duration=0.7, progress=False)
    audio = corpus / "s00_0.wav"
    os.utime(audio, ns=(audio.stat().st_atime_ns, audio.stat().st_mtime_ns + 10**9))
    with pytest.raises(FileExistsError, match=r"source\.audio_files_sha256"):
        prepare_dataset(corpus / "meta.csv", tmp_path / "v1", progress=False)
    replaced = prepare_dataset(corpus / "meta.csv", tmp_path / "v1", min_duration=0.75, overwrite=True, progress=False)
    assert not replaced.cached and replaced.skipped_by_reason["too_short"] == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]  # old version moved aside and removed


def test_overwrite_never_replaces_a_folder_prepare_did_not_write(corpus: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine", encoding="utf-8")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=r"not a dataset version written by .* \(it holds todo"):
            prepare_dataset(corpus / "meta.csv", notes, overwrite=overwrite, progress=False)
    assert (notes / "todo.txt").read_text(encoding="utf-8") == "mine"
    prepare_dataset(corpus / "meta.csv", tmp_path / "v1", progress=False)
    (tmp_path / "v1" / "my-notes.md").write_text("kept", encoding="utf-8")  # a version the user added to
    with pytest.raises(FileExistsError, match="my-notes.md"):
        prepare_dataset(corpus / "meta.csv", tmp_path / "v1", min_duration=0.75, overwrite=True, progress=False)
    assert (tmp_path / "v1" / "my-notes.md").is_file() and (tmp_path / "v1" / "dataset_dict.json").is_file()
    (tmp_path / "empty").mkdir()  # an empty folder holds nothing to lose
    assert sum(prepare_dataset(corpus / "meta.csv", tmp_path / "empty", progress=False).counts.values()) == 36


def test_overwrite_into_the_corpus_folder_loses_nothing(tmp_path: Path) -> None:
    """The reproduction of the data-loss report: --output names the folder holding the CSV and the audio."""
    corpus = tmp_path / "corpus"
    (corpus / "wavs").mkdir(parents=True)
    _wav(corpus / "wavs" / "a.wav")
    _csv(corpus / "metadata.csv", [["wavs/a.wav", "anh trai tôi làm kỹ sư", "", "", ""]])
    before = sorted(str(p.relative_to(corpus)) for p in corpus.rglob("*"))
    for output in (corpus, corpus / "wavs", tmp_path):
        code = main(["prepare", "--csv", str(corpus / "metadata.csv"), "--output", str(output), "--overwrite"])
        assert code == 2
    assert sorted(str(p.relative_to(corpus)) for p in corpus.rglob("*")) == before
    assert main(["prepare", "--csv", str(corpus / "metadata.csv"), "--output", str(corpus / "v1"), "--overwrite"]) == 0


def test_strict_fails_and_writes_no_dataset(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="1 of 37 rows have problems") as failure:
        prepare_dataset(corpus / "meta.csv", tmp_path / "v1", strict=True, report_path=tmp_path / "r.json")
    assert failure.value.result.skipped_by_reason == {"missing_file": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report) == 37 and report[-1]["reasons"] == ["missing_file"]


def test_strict_passes_a_clean_csv(corpus: Path, tmp_path: Path) -> None:
    with open(corpus / "meta.csv", encoding="utf-8") as handle:
        lines = handle.readlines()
    (tmp_path / "clean.csv").write_text("".join(lines[:-1]), encoding="utf-8")
    result = prepare_dataset(tmp_path / "clean.csv", tmp_path / "v1", audio_root=corpus, strict=True, progress=False)
    assert result.skipped_rows == 0 and sum(result.counts.values()) == 36


def test_validate_only_writes_only_the_report(corpus: Path, tmp_path: Path) -> None:
    result = prepare_dataset(
        corpus / "meta.csv", None, validate_only=True, report_path=tmp_path / "out" / "report.json", progress=False
    )
    assert result.output_dir is None and result.report_path == tmp_path / "out" / "report.json"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.json"]
    entries = json.loads(result.report_path.read_text())
    assert [e["status"] for e in entries].count("kept") == 36 and len(entries) == result.total_rows == 37
    with pytest.raises(ValueError, match="report_path"):
        prepare_dataset(corpus / "meta.csv", None, validate_only=True)


def test_auto_split_is_speaker_disjoint_and_deterministic(corpus: Path, tmp_path: Path) -> None:
    result = prepare_dataset(corpus / "meta.csv", tmp_path / "a", auto_split_ratios="0.7,0.15,0.15", progress=False)
    data = load_prepared(tmp_path / "a")
    speakers = {split: set(data[split]["speaker_id"]) for split in data}
    assert all(speakers[split] for split in data)  # every split got someone
    assert not (
        speakers["train"] & speakers["validation"]
        or speakers["train"] & speakers["test"]
        or speakers["validation"] & speakers["test"]
    )
    assert not result.warnings  # no speaker overlap to warn about
    assert read_manifest(tmp_path / "a")["options"]["auto_split"] == [0.7, 0.15, 0.15]

    with open(corpus / "meta.csv", encoding="utf-8") as handle:
        header, *lines = handle.readlines()
    random.Random(3).shuffle(lines)
    (corpus / "shuffled.csv").write_text(header + "".join(lines), encoding="utf-8")
    prepare_dataset(corpus / "shuffled.csv", tmp_path / "b", auto_split_ratios=[0.7, 0.15, 0.15], progress=False)
    again = load_prepared(tmp_path / "b")
    assert {s: sorted(again[s]["id"]) for s in again} == {s: sorted(data[s]["id"]) for s in data}


def test_auto_split_tracks_the_ratios() -> None:
    groups = [f"spk{i % 200}" for i in range(4000)]
    splits = auto_split(groups, (0.9, 0.05, 0.05), seed=0)
    shares = {s: splits.count(s) / len(splits) for s in ("train", "validation", "test")}
    assert shares == pytest.approx({"train": 0.9, "validation": 0.05, "test": 0.05}, abs=0.01)
    assert splits == auto_split(groups, (0.9, 0.05, 0.05), seed=0) != auto_split(groups, (0.9, 0.05, 0.05), seed=1)
    for bad in ("0.9,0.1", "0.5,0.5,0.5", "a,b,c", "-0.1,0.6,0.5"):
        with pytest.raises(ValueError, match="0.9,0.05,0.05|sum to 1"):
            parse_split_ratios(bad)


def test_given_splits_warn_on_speaker_overlap(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        _wav(tmp_path / f"{name}.wav")
    rows = [
        ["a.wav", "một", "", "train", "spk1"],
        ["b.wav", "hai", "", "test", "spk1"],
        ["c.wav", "ba", "", "val", "x"],
    ]
    result = prepare_dataset(_csv(tmp_path / "m.csv", rows), tmp_path / "v", progress=False)
    [warning] = result.warnings
    assert "1 train speaker(s)" in warning and "spk1 (train/test)" in warning and "--auto-split" in warning


def test_cli_strict_and_validate_only(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["prepare", "--csv", str(corpus / "meta.csv"), "--output", str(tmp_path / "v1"), "--strict"])
    out, err = capsys.readouterr()
    assert code == 2 and "strict mode wrote no dataset" in err and "missing_file" in out
    assert not (tmp_path / "v1").exists()
    code = main(["prepare", "--csv", str(corpus / "meta.csv"), "--validate-only", "--report", str(tmp_path / "r.json")])
    assert code == 0 and (tmp_path / "r.json").is_file() and "Report written" in capsys.readouterr().out
    assert main(["prepare", "--csv", str(corpus / "meta.csv"), "--validate-only"]) == 2
    assert "--report PATH" in capsys.readouterr().err
    assert main(["prepare", "--csv", str(corpus / "meta.csv")]) == 2
    assert "(--output)" in capsys.readouterr().err


def test_guide_script_prepares_into_a_version(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["prepare_data.py", "--csv_path", str(corpus / "meta.csv"), "--output_dir", str(tmp_path), "--validate"]
    monkeypatch.setattr(sys, "argv", [*argv, "--num-proc", "1"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(REPO / "scripts" / "prepare_data.py"), run_name="__main__")
    assert exit_.value.code == 0
    assert read_manifest(tmp_path / "v1")["counts"]["kept"] == 36


def test_cli_feature_settings_reach_the_manifest(corpus: Path, tmp_path: Path) -> None:
    argv = ["prepare", "--csv", str(corpus / "meta.csv"), "--output", str(tmp_path / "v1"), "--num-proc", "1"]
    assert main([*argv, "--n-mels", "40", "--hop-length", "320", "--subsampling-factor", "2"]) == 0
    manifest = read_manifest(tmp_path / "v1")
    assert manifest["feature_extractor"]["feature_size"] == 40 and manifest["feature_extractor"]["hop_length"] == 320
    assert manifest["filters"]["subsampling_factor"] == 2
    features = load_prepared(tmp_path / "v1")["train"].with_format("numpy")[0]["input_features"]
    assert features.shape == (0.6 * 16000 // 320 + 1, 40)
