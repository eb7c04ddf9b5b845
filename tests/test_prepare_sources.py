"""Other inputs and outputs of preparation: local Hugging Face datasets, on-the-fly audio, streaming."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from ai2text_hf.data import featurize_batch, load_prepared, prepare_dataset, read_manifest
from ai2text_hf.data.audio import audio_array
from ai2text_hf.data.streaming import stream_dataset
from ai2text_hf.feature_extraction_ai2text import AI2TextFeatureExtractor

RNG = np.random.default_rng(2)
SENTENCES = ["xin chào", "hôm nay", "trời đẹp", "cảm ơn"]


def _wave(seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return 0.3 * np.sin(2 * np.pi * 180 * t) + 0.05 * RNG.standard_normal(t.size)


def _encoded(fmt: str, seconds: float, sr: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, _wave(seconds, sr), sr, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hf_splits() -> dict[str, datasets.Dataset]:
    """Audio embedded as bytes (WAV 16 kHz, MP3 22.05 kHz, FLAC), Common-Voice-like columns, one bad row."""
    audio = [
        {"bytes": _encoded("WAV", 1.0, 16000), "path": "a.wav"},
        {"bytes": _encoded("MP3", 1.2, 22050), "path": "b.mp3"},
        {"bytes": _encoded("FLAC", 0.9, 16000), "path": "c.flac"},
        {"bytes": b"not audio at all", "path": "d.wav"},
    ]
    # Encoding an Audio feature needs torchcodec in datasets 5: store the {bytes, path} struct, then cast.
    struct = datasets.Features(
        {
            "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
            "sentence": datasets.Value("string"),
            "client_id": datasets.Value("string"),
            "age": datasets.Value("int32"),
        }
    )
    table = {"audio": audio, "sentence": SENTENCES, "client_id": ["u1", "u1", "u2", "u2"], "age": [20, 20, 30, 30]}
    train = datasets.Dataset.from_dict(table, features=struct).cast_column("audio", datasets.Audio(decode=False))
    return {"train": train.select([0, 1, 3]), "validation": train.select([2])}


def _check_hf_result(out: Path, layout: str) -> None:
    manifest = read_manifest(out)
    assert manifest["source"]["layout"] == layout and manifest["counts"]["rows"] == 4
    report = json.loads((out / "report.json").read_text())
    assert [entry["reasons"] for entry in report] == [[], [], ["undecodable_file"], []]
    data = load_prepared(out)
    assert list(data["train"]["text"]) == ["xin chào", "hôm nay"] and list(data["val"]["text"]) == ["trời đẹp"]
    assert list(data["train"]["speaker_id"]) == ["u1", "u1"] and list(data["train"]["age"]) == ["20", "20"]
    assert data["train"]["duration"] == pytest.approx([1.0, 1.2], abs=0.01)
    feats = data["train"].with_format("numpy")[1]["input_features"]
    assert feats.shape == (AI2TextFeatureExtractor().num_frames(int(1.2 * 16000)), 80)


@pytest.mark.parametrize("layout", ["save_to_disk", "parquet"])
def test_hf_dataset_with_embedded_audio(hf_splits: dict[str, datasets.Dataset], tmp_path: Path, layout: str) -> None:
    source = tmp_path / "hf"
    if layout == "save_to_disk":
        datasets.DatasetDict(hf_splits).save_to_disk(str(source))
    else:
        for split, part in hf_splits.items():
            part.to_parquet(str(source / "data" / f"{split}-00000-of-00001.parquet"))
    prepare_dataset(
        None,
        tmp_path / "v1",
        hf_dataset=source,
        text_column="sentence",
        speaker_column="client_id",
        progress=False,
    )
    _check_hf_result(tmp_path / "v1", layout)
    assert not list(tmp_path.glob(".v1.partial-*"))


def test_hf_audiofolder(tmp_path: Path) -> None:
    folder = tmp_path / "af"
    for split, names in {"train": ["a", "b", "d"], "validation": ["c"]}.items():
        (folder / split).mkdir(parents=True)
        lines = ["file_name,sentence,client_id,age"]
        for name in names:
            index = "abcd".index(name)
            if name == "d":
                (folder / split / "d.wav").write_bytes(b"not audio at all")
            else:
                sf.write(folder / split / f"{name}.wav", _wave([1.0, 1.2, 0.9][index]), 16000)
            lines.append(f"{name}.wav,{SENTENCES[index]},u{1 + index // 2},{20 + 10 * (index // 2)}")
        (folder / split / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepare_dataset(
        None, tmp_path / "v1", hf_dataset=folder, text_column="sentence", speaker_column="client_id", progress=False
    )
    report = json.loads((tmp_path / "v1" / "report.json").read_text())
    assert [(e["file_path"], e["reasons"]) for e in report] == [
        ("train/a.wav", []),
        ("train/b.wav", []),
        ("train/d.wav", ["undecodable_file"]),
        ("validation/c.wav", []),
    ]
    data = load_prepared(tmp_path / "v1")
    assert list(data["train"]["text"]) == ["xin chào", "hôm nay"] and list(data["val"]["age"]) == ["30"]


def test_hf_dataset_errors_are_clear(hf_splits: dict[str, datasets.Dataset], tmp_path: Path) -> None:
    datasets.DatasetDict(hf_splits).save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(ValueError, match="no column.*'text'.*--text-column"):
        prepare_dataset(None, tmp_path / "v1", hf_dataset=tmp_path / "hf", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a local Hugging Face dataset"):
        prepare_dataset(None, tmp_path / "v2", hf_dataset=tmp_path / "empty", progress=False)


@pytest.fixture(scope="module")
def csv_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("csv")
    lines = ["file_path,transcript,duration,split,speaker_id"]
    for index, text in enumerate(SENTENCES):
        sf.write(root / f"{index}.wav", _wave(0.8 + 0.2 * index, 22050), 22050)
        lines.append(f"{index}.wav,{text},,{'test' if index == 3 else 'train'},s{index}")
    lines.append("missing.wav,không,,train,s9")
    (root / "meta.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepare_dataset(root / "meta.csv", root / "features", progress=False)
    return root


def test_on_the_fly_stores_audio_that_featurizes_like_prepare(csv_corpus: Path, tmp_path: Path) -> None:
    prepare_dataset(csv_corpus / "meta.csv", tmp_path / "otf", on_the_fly=True, progress=False)
    manifest = read_manifest(tmp_path / "otf")
    assert manifest["options"]["store"] == "audio" and "input_features" not in manifest["columns"]
    audio, features = load_prepared(tmp_path / "otf"), load_prepared(csv_corpus / "features")
    train = audio["train"].with_format("numpy")
    assert train.features["audio"] == datasets.Audio(sampling_rate=16000, decode=False)
    assert len(audio_array(train[0]["audio"])) == pytest.approx(0.8 * 16000, abs=2)  # resampled from 22.05 kHz
    computed = featurize_batch(train["audio"], AI2TextFeatureExtractor())
    for ours, stored in zip(computed, features["train"].with_format("numpy")["input_features"]):
        np.testing.assert_allclose(ours, stored, atol=1e-5)
    assert featurize_batch([], AI2TextFeatureExtractor()) == []


def test_stream_dataset_yields_checked_rows_with_features(csv_corpus: Path) -> None:
    stream = stream_dataset(csv_corpus / "meta.csv", split="train", num_shards=2)
    assert isinstance(stream, datasets.IterableDataset) and stream.num_shards == 2
    rows = sorted(stream.with_format("numpy"), key=lambda row: row["id"])
    stored = load_prepared(csv_corpus / "features")["train"].with_format("numpy")
    assert [row["id"] for row in rows] == list(stored["id"]) == ["0", "1", "2"]  # the missing file is dropped
    for row, feats in zip(rows, stored["input_features"]):
        np.testing.assert_allclose(row["input_features"], feats, atol=1e-5)
        assert set(row) == set(stored.column_names)
    with pytest.raises(ValueError, match="no rows in split 'validation'"):  # 'val' names it too
        stream_dataset(csv_corpus / "meta.csv", split="val")
