"""Tests for audio decoding and the CSV → prepared DatasetDict stage (tiny synthetic fixtures, seconds)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ai2text_hf.data import AudioDecodeError, load_audio, load_prepared, prepare_dataset, read_manifest
from ai2text_hf.data import prepare as prepare_module
from ai2text_hf.data.audio import audio_info, decode_audio
from ai2text_hf.data.validation import REASONS
from ai2text_hf.data.versions import audio_file
from ai2text_hf.feature_extraction_ai2text import AI2TextFeatureExtractor

REAL_VI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-vi"
COLUMNS = ["file_path", "transcript", "duration", "split", "speaker_id"]
RNG = np.random.default_rng(0)


def _tone(seconds: float, sr: int = 16000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * RNG.standard_normal(t.size)
    return np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave


def _write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8", columns: list[str] = COLUMNS) -> None:
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)


# name → (CSV row, expected reasons). Order is the CSV order. The last column ("gender") is an extra one.
def _corpus(root: Path) -> dict[str, tuple[list[str], list[str]]]:
    audio = root / "corpus" / "audio"
    (audio / "sub").mkdir(parents=True)
    for name, seconds in [("good", 1.2), ("nfd", 1.1), ("digits", 1.3), ("loan", 1.0)]:
        sf.write(audio / f"{name}.wav", _tone(seconds), 16000)
    shutil.copyfile(audio / "good.wav", audio / "copy.wav")
    sf.write(audio / "sub" / "good.wav", _tone(0.9), 16000)  # same stem: id must be made unique
    sf.write(audio / "stereo.wav", _tone(1.0, 44100, channels=2), 44100)
    sf.write(audio / "clip.flac", _tone(0.8), 16000)
    sf.write(audio / "clip.mp3", _tone(1.5, 22050), 22050)
    sf.write(audio / "short.wav", _tone(0.025), 16000)
    sf.write(audio / "long.wav", np.zeros(31 * 8000, dtype=np.int16), 8000)
    sf.write(audio / "silence.wav", np.zeros(3 * 16000, dtype=np.int16), 16000)
    sf.write(audio / "clipped.wav", np.clip(4 * _tone(1.0), -1, 1), 16000)
    sf.write(root / "outside.wav", _tone(1.0), 16000)
    (audio / "corrupt.wav").write_bytes(RNG.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (audio / "zero.wav").write_bytes(b"")
    nfd = unicodedata.normalize("NFD", "Tiếng Việt")
    return {
        "good": (["audio/good.wav", "xin chào", "1.2", "train", "spk1", "f"], []),
        "same_stem": (["audio/sub/good.wav", "cảm ơn", "", "", "", ""], []),
        "stereo": (["audio/stereo.wav", "hà nội", "1.0", "test", "spk2", "m"], []),
        "flac": (["audio/clip.flac", "hôm nay", "0.8", "dev", "spk2", "m"], []),
        "mp3": (["audio/clip.mp3", "trời đẹp", "1.5", "train", "spk3", ""], []),
        "nfd": (["audio/nfd.wav", nfd, "", "validation", "spk1", "f"], []),
        "digits": (["audio/digits.wav", "Có 3 con mèo!", "", "train", "spk3", ""], []),
        "loanword": ([str(audio / "loan.wav"), "wifi zoo jazz", "", "train", "spk3", ""], []),
        "missing": (["audio/nope.wav", "không có", "", "train", "", ""], ["missing_file"]),
        "corrupt": (["audio/corrupt.wav", "hỏng", "", "train", "", ""], ["undecodable_file"]),
        "zero": (["audio/zero.wav", "rỗng", "", "train", "", ""], ["empty_file"]),
        "short": (["audio/short.wav", "a", "", "train", "", ""], ["too_short"]),
        "long": (["audio/long.wav", "dài", "", "train", "", ""], ["too_long"]),
        "silence": (["audio/silence.wav", "im lặng", "", "train", "", ""], ["silent"]),
        "clipped": (["audio/clipped.wav", "to quá", "", "train", "", ""], ["clipped"]),
        "snowman": (["audio/good.wav", "trời ☃ lạnh", "", "train", "", ""], ["unknown_characters"]),
        "cjk": (["audio/good.wav", "漢字", "", "train", "", ""], ["unknown_characters"]),
        "empty_text": (["audio/good.wav", "  ", "", "train", "", ""], ["empty_transcript"]),
        "too_many_labels": (
            ["audio/clip.flac", "một hai ba bốn năm sáu bảy tám chín mười " * 3, "", "train", "", ""],
            ["transcript_too_long"],
        ),
        "negative": (["audio/good.wav", "âm", "-1.5", "train", "", ""], ["bad_duration"]),
        "mismatch": (["audio/digits.wav", "sai thời lượng", "2.5", "train", "", ""], ["duration_mismatch"]),
        "split": (["audio/good.wav", "lạ", "", "holdout", "", ""], ["unknown_split"]),
        "duplicate_row": (["audio/good.wav", "Xin chào.", "", "train", "spk1", "f"], ["duplicate_row"]),
        "duplicate_audio": (["audio/copy.wav", "bản sao", "", "train", "", ""], ["duplicate_audio"]),
        "traversal": (["../../etc/passwd", "mật khẩu", "", "train", "", ""], ["outside_root"]),
        # Absolute paths are the CSV's explicit choice (what importers write for a corpus elsewhere): taken as written.
        "absolute_elsewhere": ([str(root / "outside.wav"), "bên ngoài", "", "train", "", ""], []),
        "two_problems": (
            ["audio/nope.wav", "☃", "abc", "train", "", ""],
            ["bad_duration", "unknown_characters", "missing_file"],
        ),
        "malformed": (["audio/good.wav", "xin", "chào", "1.0", "train", "spk1", "f"], ["malformed_row"]),
    }


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    root = tmp_path_factory.mktemp("prep")
    corpus = _corpus(root)
    _write_csv(root / "corpus" / "metadata.csv", [row for row, _ in corpus.values()], columns=[*COLUMNS, "gender"])
    result = prepare_dataset(root / "corpus" / "metadata.csv", root / "v1", progress=False)
    assert result.output_dir == root / "v1" and not result.cached
    return root / "v1", corpus, root / "corpus"


def test_report_gives_each_row_its_reasons(prepared: tuple[Path, dict, Path]) -> None:
    out, corpus, root = prepared
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert len(report) == len(corpus)
    for number, (entry, (name, (row, expected))) in enumerate(zip(report, corpus.items()), start=1):
        assert entry["row"] == number and entry["file_path"] == row[0], name
        assert entry["reasons"] == expected, name
        assert entry["status"] == ("skipped" if expected else "kept"), name
        assert bool(entry["fix"]) == bool(expected), name
    assert {code for entry in report for code in entry["reasons"]} == set(REASONS)  # every check exercised
    fixes = {name: entry["fix"] for name, entry in zip(corpus, report)}
    assert "'☃' (U+2603)" in fixes["snowman"] and "'漢'" in fixes["cjk"]
    assert str(root / "audio" / "nope.wav") in fixes["missing"]
    assert "row 1" in fixes["duplicate_row"] and "row 1's" in fixes["duplicate_audio"]
    assert "--allow-outside-root" in fixes["traversal"] and "2.5 s" in fixes["mismatch"]


def test_counts_add_up_to_the_csv_rows(prepared: tuple[Path, dict, Path]) -> None:
    out, corpus, _ = prepared
    manifest = read_manifest(out)
    counts = manifest["counts"]
    assert counts["rows"] == len(corpus) == counts["kept"] + counts["skipped"]
    assert counts["kept"] == counts["train"] + counts["validation"] + counts["test"] == 9
    assert counts["skipped_by_reason"]["unknown_characters"] == 3
    assert counts["skipped_by_reason"]["outside_root"] == 1


def test_kept_rows_are_featurised(prepared: tuple[Path, dict, Path]) -> None:
    out, corpus, root = prepared
    data = load_prepared(out)
    assert list(data) == ["train", "validation", "test"]
    assert [len(data[s]) for s in data] == [6, 2, 1]
    fe = AI2TextFeatureExtractor()
    rows = {r["id"]: r for split in data for r in data[split].with_format("numpy")}
    assert sorted(rows) == ["clip", "clip_2", "digits", "good", "good_2", "loan", "nfd", "outside", "stereo"]
    manifest = read_manifest(out)
    for row in rows.values():
        wave, duration = load_audio(audio_file(manifest, row["file_path"]))
        assert row["input_features"].dtype == np.float32
        assert row["input_features"].shape == (fe.num_frames(len(wave)), 80)
        assert row["duration"] == pytest.approx(duration)
    stereo = rows["stereo"]
    assert stereo["split"] == "test" and stereo["duration"] == pytest.approx(1.0)
    # Stored relative to the audio root the manifest records; a file outside it keeps its absolute path.
    assert stereo["file_path"] == "audio/stereo.wav" and manifest["audio_root"] == str(root)
    assert rows["outside"]["file_path"] == str(root.parent / "outside.wav")
    assert rows["clip"]["split"] == "validation"  # dev → validation
    assert rows["clip_2"]["text"] == "trời đẹp" and rows["clip_2"]["duration"] == pytest.approx(1.5, abs=0.01)
    assert rows["nfd"]["text"] == unicodedata.normalize("NFC", "tiếng việt") and rows["nfd"]["split"] == "validation"
    assert rows["nfd"]["transcript"] == corpus["nfd"][0][1]  # kept as given
    assert rows["digits"]["text"] == "có ba con mèo"
    assert rows["loan"]["text"] == "wifi zoo jazz"
    assert rows["good_2"]["speaker_id"] == "" and rows["good_2"]["split"] == "train"
    assert rows["good"]["gender"] == "f" and rows["stereo"]["gender"] == "m"  # extra CSV column kept
    batch = data["train"].with_format("torch")[:2]["input_features"]
    assert [tuple(t.shape)[1] for t in batch] == [80, 80]


def test_stats_manifest_and_overlap_warning(prepared: tuple[Path, dict, Path]) -> None:
    out, corpus, root = prepared
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["train_files"], stats["validation_files"], stats["test_files"]) == (6, 2, 1)
    assert (stats["train_speakers"], stats["validation_speakers"], stats["test_speakers"]) == (2, 2, 1)
    assert stats["train_hours"] == pytest.approx((1.2 + 0.9 + 1.5 + 1.3 + 1.0 + 1.0) / 3600, abs=1e-5)
    assert stats["total_files"] == 9 and stats["skipped_rows"] == len(corpus) - 9
    assert stats["total_hours"] == pytest.approx(
        stats["train_hours"] + stats["validation_hours"] + stats["test_hours"], abs=1e-5
    )
    manifest = read_manifest(out)
    assert manifest["feature_extractor"] == AI2TextFeatureExtractor().to_dict()
    assert manifest["normalizer"] == {"tone_placement": "classic"}
    assert len(manifest["alphabet"]) == 93
    assert manifest["source"]["csv"] == str(root / "metadata.csv") and len(manifest["source"]["sha256"]) == 64
    assert manifest["options"]["store"] == "features" and manifest["filters"]["silence_db"] == -60.0
    assert "gender" in manifest["columns"] and len(manifest["fingerprint"]) == 64
    assert {"ai2text_hf_version", "created", "format_version", "filters", "run"} <= set(manifest)
    [warning] = manifest["warnings"]
    # spk2 is shared by validation and test only, which does not flatter the scores: no warning for it.
    assert "1 train speaker(s)" in warning and "spk1 (train/validation)" in warning and "spk2" not in warning
    assert not list(out.parent.glob(".v1.partial-*"))


def test_summary_table(prepared: tuple[Path, dict, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _, corpus, root = prepared
    prepare_dataset(root / "metadata.csv", tmp_path / "v1", batch_size=8)
    out = capsys.readouterr().out
    assert f"Checked {len(corpus)} rows: 9 kept + {len(corpus) - 9} skipped" in out
    assert "train" in out and "outside_root" in out and "warning: 1 train speaker(s)" in out


def test_outside_root_is_allowed_when_asked(tmp_path: Path) -> None:
    (tmp_path / "csv").mkdir()
    sf.write(tmp_path / "a.wav", _tone(0.7), 16000)
    _write_csv(tmp_path / "csv" / "meta.csv", [["../a.wav", "một", "", "", ""]])
    refused = prepare_dataset(tmp_path / "csv" / "meta.csv", tmp_path / "refused", progress=False)
    assert refused.skipped_by_reason == {"outside_root": 1}
    allowed = prepare_dataset(
        tmp_path / "csv" / "meta.csv", tmp_path / "allowed", allow_outside_root=True, progress=False
    )
    assert allowed.counts["train"] == 1


def test_a_symlink_leaving_the_audio_root_is_outside_it(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    sf.write(tmp_path / "secret.wav", _tone(0.7), 16000)
    sf.write(tmp_path / "corpus" / "own.wav", _tone(0.7), 16000)
    (tmp_path / "corpus" / "escape.wav").symlink_to(tmp_path / "secret.wav")
    (tmp_path / "corpus" / "inside.wav").symlink_to(tmp_path / "corpus" / "own.wav")
    _write_csv(tmp_path / "corpus" / "meta.csv", [["escape.wav", "một", "", "", ""], ["inside.wav", "hai", "", "", ""]])
    result = prepare_dataset(tmp_path / "corpus" / "meta.csv", tmp_path / "out", progress=False)
    assert result.skipped_by_reason == {"outside_root": 1} and result.counts["train"] == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report[0]["reasons"] == ["outside_root"] and f"a link to {tmp_path / 'secret.wav'}" in report[0]["fix"]


@pytest.mark.parametrize("written, on_disk", [("NFD", "NFC"), ("NFC", "NFD")])
def test_a_path_in_the_other_unicode_normalisation_finds_its_file(tmp_path: Path, written: str, on_disk: str) -> None:
    name = "tiếng việt/câu một.wav"
    (tmp_path / unicodedata.normalize(on_disk, name)).parent.mkdir()
    sf.write(tmp_path / unicodedata.normalize(on_disk, name), _tone(0.7), 16000)
    _write_csv(tmp_path / "meta.csv", [[unicodedata.normalize(written, name), "một", "", "", ""]])
    result = prepare_dataset(tmp_path / "meta.csv", tmp_path / "out", progress=False)
    assert result.skipped_rows == 0 and result.counts["train"] == 1


def test_an_unterminated_quote_names_its_line_and_loses_no_row(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", _tone(0.7), 16000)
    lines = ["file_path,transcript", "a.wav,một", 'a.wav,"hai ba', "a.wav,bốn", "a.wav,năm", "a.wav,sáu"]
    (tmp_path / "meta.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"meta\.csv, line 3: a quoted field opened on this line runs on to line 6"):
        prepare_dataset(tmp_path / "meta.csv", tmp_path / "out", progress=False)
    huge = ["file_path,transcript", "a.wav,một", "", 'a.wav,"' + "x" * 200_000]  # past csv's field size limit
    (tmp_path / "huge.csv").write_text("\n".join(huge) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"huge\.csv, line 4: a quoted field opened on this line never closes"):
        prepare_dataset(tmp_path / "huge.csv", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_report_names_each_rows_csv_line(tmp_path: Path) -> None:
    sf.write(tmp_path / "a.wav", _tone(0.7), 16000)
    (tmp_path / "meta.csv").write_text("file_path,transcript\na.wav,một\n\nmissing.wav,hai\n", encoding="utf-8")
    prepare_dataset(tmp_path / "meta.csv", tmp_path / "out", progress=False)
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert [(entry["row"], entry["line"], entry["status"]) for entry in report] == [(1, 2, "kept"), (2, 4, "skipped")]


def test_bom_csv_and_audio_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    audio = tmp_path / "elsewhere"
    audio.mkdir()
    sf.write(audio / "a.wav", _tone(0.7), 16000)
    _write_csv(tmp_path / "meta.csv", [["a.wav", "một", "", "", ""]], encoding="utf-8-sig")
    assert (tmp_path / "meta.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    result = prepare_dataset(tmp_path / "meta.csv", tmp_path / "out", audio_root=audio)
    assert "Checked 1 rows: 1 kept + 0 skipped" in capsys.readouterr().out
    assert result.counts == {"train": 1, "validation": 0, "test": 0} and result.skipped_rows == 0
    data = load_prepared(tmp_path / "out")
    assert len(data["validation"]) == 0 and data["validation"].features == data["train"].features
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "meta.csv", "out"]


def test_parallel_map_matches_serial(prepared: tuple[Path, dict, Path], tmp_path: Path) -> None:
    out, _, root = prepared
    prepare_dataset(root / "metadata.csv", tmp_path / "par", num_proc=2, batch_size=3, progress=False)
    assert (tmp_path / "par" / "report.json").read_text() == (out / "report.json").read_text()
    serial, parallel = load_prepared(out), load_prepared(tmp_path / "par")
    for split in serial:
        a, b = serial[split].with_format("numpy"), parallel[split].with_format("numpy")
        assert list(a["id"]) == list(b["id"])
        for x, y in zip(a["input_features"], b["input_features"]):
            np.testing.assert_allclose(x, y, atol=1e-5)


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sf.write(tmp_path / "a.wav", _tone(0.7), 16000)
    _write_csv(tmp_path / "meta.csv", [["a.wav", "một", "", "", ""]])

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "save_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(tmp_path / "meta.csv", tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "meta.csv"]


def test_bad_inputs_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ai2text prepare"):
        load_prepared(tmp_path)
    (tmp_path / "bad.csv").write_text("path,text\na.wav,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="file_path"):
        prepare_dataset(tmp_path / "bad.csv", tmp_path / "out", progress=False)
    (tmp_path / "header_only.csv").write_text("file_path,transcript\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no data rows"):
        prepare_dataset(tmp_path / "header_only.csv", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="exactly one input"):
        prepare_dataset(None, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_load_audio(tmp_path: Path) -> None:
    sf.write(tmp_path / "st.wav", _tone(0.5, 44100, channels=2), 44100)
    wave, duration = load_audio(tmp_path / "st.wav")
    assert wave.dtype == np.float32 and wave.ndim == 1 and np.abs(wave).max() <= 1.0
    assert duration == pytest.approx(0.5) and len(wave) == pytest.approx(8000, abs=2)
    from_bytes = decode_audio((tmp_path / "st.wav").read_bytes())
    np.testing.assert_array_equal(from_bytes.wave, wave)
    assert from_bytes.clipped_share == 0.0
    info = audio_info(tmp_path / "st.wav")
    assert (info.sample_rate, info.channels) == (44100, 2)
    (tmp_path / "zero.wav").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really")
    for name, reason in [
        ("missing.wav", "missing_file"),
        ("zero.wav", "empty_file"),
        ("junk.wav", "undecodable_file"),
    ]:
        with pytest.raises(AudioDecodeError, match=name) as error:
            load_audio(tmp_path / name)
        assert error.value.reason == reason
    with pytest.raises(AudioDecodeError, match="row 3") as error:
        decode_audio(b"", name="row 3")
    assert error.value.reason == "empty_file"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_speech_and_mp3_are_kept(tmp_path: Path) -> None:
    subprocess.run(["espeak-ng", "-v", "vi", "-w", str(tmp_path / "s.wav"), "xin chào các bạn"], check=True)
    wave, sr = sf.read(tmp_path / "s.wav")
    sf.write(tmp_path / "s.mp3", wave, sr)  # libsndfile ≥ 1.1 writes and reads MP3
    _write_csv(tmp_path / "m.csv", [["s.wav", "Xin chào các bạn.", "", "", ""], ["s.mp3", "xin chào", "", "", ""]])
    result = prepare_dataset(tmp_path / "m.csv", tmp_path / "out", progress=False)
    assert result.counts["train"] == 2 and result.skipped_rows == 0


def test_real_vi_prepares_cleanly(tmp_path: Path) -> None:
    if not (REAL_VI / "metadata.csv").is_file():
        pytest.skip(f"{REAL_VI} is not present")
    result = prepare_dataset(REAL_VI / "metadata.csv", tmp_path / "real", progress=False)
    assert result.skipped_rows == 0, (tmp_path / "real" / "report.json").read_text()
    assert result.counts == {"train": 50, "validation": 10, "test": 8}
    stats = json.loads(result.stats_path.read_text())
    assert stats["total_hours"] == pytest.approx(4.4 / 60, rel=0.05)
    assert 0 < stats["test_vocab_coverage"] < 1 and stats["train_alphabet_coverage"] > 0.5
    feats = load_prepared(result.output_dir)["test"].with_format("numpy")[0]["input_features"]
    assert feats.shape[1] == 80 and np.isfinite(feats).all()
