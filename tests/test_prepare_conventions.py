"""Own corpora without traps and the dataset conventions: several CSVs, a validation split carved from train,
``validation`` (older ``val`` folders still read), paths relative to the recorded audio root, ``datasets.Audio``
and the dataset card."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from ai2text_hf.cli import main
from ai2text_hf.data import PrepareOptions, dataset_statistics, load_prepared, prepare_dataset, read_manifest
from ai2text_hf.data.audio import audio_array, load_audio, with_features
from ai2text_hf.data.versions import audio_file, resolve_split
from ai2text_hf.feature_extraction_ai2text import AI2TextFeatureExtractor

RNG = np.random.default_rng(7)
WORDS = ["một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín", "mười"]


def _wav(path: Path, seconds: float = 0.8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 16000)) / 16000
    sf.write(path, 0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * RNG.standard_normal(t.size), 16000)


def _corpus(folder: Path, speakers: int, per_speaker: int = 2, split: str = "train") -> Path:
    """A folder with audio/ and metadata.csv (relative paths), ``speakers`` x ``per_speaker`` rows."""
    rows = []
    for s in range(speakers):
        for u in range(per_speaker):
            name = f"audio/{folder.name}_s{s}_{u}.wav"
            _wav(folder / name, 0.6 + 0.1 * u + 0.01 * s)
            rows.append([name, WORDS[(s + u) % len(WORDS)], "", split, f"{folder.name}-spk{s}"])
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_path", "transcript", "duration", "split", "speaker_id"])
        writer.writerows(rows)
    return folder / "metadata.csv"


def test_a_validation_split_is_carved_from_train_by_speaker_when_none_is_given(tmp_path: Path) -> None:
    metadata = _corpus(tmp_path / "c", speakers=12)
    result = prepare_dataset(metadata, tmp_path / "v1", validation_from_train=0.2, progress=False)
    data = load_prepared(tmp_path / "v1")
    speakers = {split: set(data[split]["speaker_id"]) for split in data}
    assert result.counts["validation"] > 0 and result.counts["train"] > 0
    assert not speakers["train"] & speakers["validation"]  # whole speakers moved
    assert len(result.notes) == 1 and "--validation-from-train 0.2" in result.notes[0]
    assert read_manifest(tmp_path / "v1")["notes"] == list(result.notes)
    header, *lines = metadata.read_text(encoding="utf-8").splitlines(keepends=True)
    (metadata.parent / "reversed.csv").write_text(header + "".join(reversed(lines)), encoding="utf-8")
    prepare_dataset(metadata.parent / "reversed.csv", tmp_path / "v2", validation_from_train=0.2, progress=False)
    assert sorted(load_prepared(tmp_path / "v2")["validation"]["id"]) == sorted(data["validation"]["id"])
    off = prepare_dataset(metadata, tmp_path / "off", validation_from_train=0, progress=False)
    assert off.counts == {"train": 24, "validation": 0, "test": 0} and not off.notes


def test_too_few_speakers_to_carve_is_said_not_hidden(tmp_path: Path) -> None:
    result = prepare_dataset(_corpus(tmp_path / "c", speakers=2), tmp_path / "v1", progress=False)
    assert result.counts["validation"] == 0 and "too few" in result.notes[0] and "--auto-split" in result.notes[0]


def test_several_csvs_combine_each_with_its_own_audio_root(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first = _corpus(tmp_path / "a", speakers=2)
    second = _corpus(tmp_path / "b", speakers=1, split="test")
    moved = tmp_path / "b-audio"  # the second corpus's audio lives elsewhere: it takes its own --audio-root
    shutil.move(tmp_path / "b" / "audio", moved / "audio")
    (tmp_path / "a" / "metadata.csv").write_text(
        first.read_text(encoding="utf-8") + "audio/missing.wav,không,,train,x\n", encoding="utf-8"
    )
    argv = ["prepare", "--csv", str(first), "--csv", str(second), "--audio-root", str(tmp_path / "a"),
            "--audio-root", str(moved), "--output", str(tmp_path / "v1"), "--validation-from-train", "0"]  # fmt: skip
    assert main(argv) == 0
    assert "Checked 7 rows: 6 kept + 1 skipped" in capsys.readouterr().out
    report = json.loads((tmp_path / "v1" / "report.json").read_text(encoding="utf-8"))
    assert [(entry["csv"], entry["line"]) for entry in report] == [(str(first), n) for n in range(2, 7)] + [
        (str(second), 2),
        (str(second), 3),
    ]  # every line of every CSV accounted for
    assert report[4]["reasons"] == ["missing_file"]
    data, manifest = load_prepared(tmp_path / "v1"), read_manifest(tmp_path / "v1")
    assert (len(data["train"]), len(data["test"])) == (4, 2)
    assert manifest["audio_root"] == str(tmp_path)  # the folder both roots share
    assert data["test"][0]["file_path"] == "b-audio/audio/b_s0_0.wav"
    assert all(audio_file(manifest, row["file_path"]).is_file() for split in data for row in data[split])
    assert manifest["source"]["kind"] == "csvs" and len(manifest["source"]["parts"]) == 2


def test_audio_roots_must_be_one_or_one_per_csv(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    first, second = _corpus(tmp_path / "a", speakers=1), _corpus(tmp_path / "b", speakers=1)
    roots = ["--audio-root", str(tmp_path), "--audio-root", str(tmp_path), "--audio-root", str(tmp_path)]
    code = main(["prepare", "--csv", str(first), "--csv", str(second), *roots, "--output", str(tmp_path / "v")])
    assert code == 2 and "3 --audio-root for 2 --csv" in capsys.readouterr().err


def test_stored_audio_is_a_datasets_audio_feature_read_like_before(tmp_path: Path) -> None:
    metadata = _corpus(tmp_path / "c", speakers=1)
    prepare_dataset(metadata, tmp_path / "otf", on_the_fly=True, progress=False)
    prepare_dataset(metadata, tmp_path / "feat", progress=False)
    train = load_prepared(tmp_path / "otf")["train"]
    assert train.features["audio"] == datasets.Audio(sampling_rate=16000, decode=False)
    row = train[0]
    assert row["audio"]["path"] == row["file_path"] == "audio/c_s0_0.wav"
    wave, _ = load_audio(tmp_path / "c" / row["file_path"])
    np.testing.assert_array_equal(audio_array(row["audio"]), wave)  # lossless: float32 WAV bytes
    computed = with_features(train, AI2TextFeatureExtractor())[:]["input_features"]
    stored = load_prepared(tmp_path / "feat")["train"].with_format("numpy")[:]["input_features"]
    for ours, theirs in zip(computed, stored):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_each_version_has_a_dataset_card(tmp_path: Path) -> None:
    metadata = _corpus(tmp_path / "c", speakers=12)
    options = PrepareOptions(csv_path=metadata, output_dir=tmp_path / "v1", min_duration=0.3, on_the_fly=True)
    prepare_dataset(options, progress=False)
    card = (tmp_path / "v1" / "README.md").read_text(encoding="utf-8")
    header = card.split("---")[1]
    assert "automatic-speech-recognition" in header and "num_examples" in header and "sampling_rate: 16000" in header
    counts = read_manifest(tmp_path / "v1")["counts"]
    for split in ("train", "validation", "test"):
        assert f"| {split} | {counts[split]} |" in card
    assert "| `audio` | Audio |" in card and "| `file_path` | string |" in card
    assert "min_duration: 0.3" in card and "on_the_fly: true" in card and "max_duration" not in card
    assert "# Dataset version `v1`" in card and "became it" in card  # the carved validation split is explained


def test_versions_prepared_with_a_val_split_are_still_read(tmp_path: Path) -> None:
    """A format-1 folder (``val``, absolute paths, no card) loads, and both split names find its split."""
    metadata = _corpus(tmp_path / "c", speakers=12)
    prepare_dataset(metadata, tmp_path / "old", validation_from_train=0.2, progress=False)
    old = tmp_path / "old"
    (old / "validation").rename(old / "val")
    (old / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "val", "test"]}), encoding="utf-8")
    manifest = read_manifest(old)
    manifest.update(format_version=1, audio_root=None)
    (old / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    data = load_prepared(old)
    assert list(data) == ["train", "val", "test"]
    assert len(data["validation"]) == len(data["val"]) > 0 and "validation" in data and "dev" not in data
    assert resolve_split(data, "validation") == "val" and resolve_split(["train", "validation"], "val") == "validation"
    with pytest.raises(ValueError, match="No split 'holdout'.*train, val, test"):
        resolve_split(data, "holdout")
    assert dataset_statistics(old)["validation_files"] == len(data["val"])
