"""Importers: small fixtures in each corpus's published layout → our CSV → a prepared dataset."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ai2text_hf.cli import main
from ai2text_hf.data import load_prepared, prepare_dataset
from ai2text_hf.data.importers import import_commonvoice, import_folder, import_vivos

RNG = np.random.default_rng(3)


def _audio(path: Path, seconds: float = 1.0, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * 200 * t) + 0.05 * RNG.standard_normal(t.size), sr)


def _rows(csv_path: Path) -> list[dict[str, str]]:
    with open(csv_path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def vivos(tmp_path: Path) -> Path:
    root = tmp_path / "vivos"
    prompts = {
        "train": ["VIVOSSPK01_R001 KHÁCH SẠN", "VIVOSSPK01_R002 CHỈ BẰNG CÁCH", "VIVOSSPK02_R001 TRONG SỐ"],
        "test": ["VIVOSDEV01_R001 HÔM NAY", "VIVOSDEV01_R002 KHÔNG CÓ FILE"],
    }
    for split, lines in prompts.items():
        (root / split).mkdir(parents=True)
        (root / split / "prompts.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for line in lines[:3] if split == "train" else lines[:1]:
            utterance = line.split()[0]
            _audio(root / split / "waves" / utterance.split("_")[0] / f"{utterance}.wav")
    (root / "train" / "genders.txt").write_text("VIVOSSPK01 m\nVIVOSSPK02 f\n", encoding="utf-8")
    (root / "test" / "genders.txt").write_text("VIVOSDEV01 f\n", encoding="utf-8")
    return root


def test_vivos_rows_and_preparation(vivos: Path, tmp_path: Path) -> None:
    result = import_vivos(vivos, vivos / "metadata.csv")
    assert result.rows == 5 and result.splits == {"train": 3, "test": 2}
    rows = _rows(vivos / "metadata.csv")
    assert list(rows[0]) == ["file_path", "transcript", "duration", "split", "speaker_id", "gender"]
    assert rows[0] == {
        "file_path": "train/waves/VIVOSSPK01/VIVOSSPK01_R001.wav",
        "transcript": "KHÁCH SẠN",
        "duration": "",
        "split": "train",
        "speaker_id": "VIVOSSPK01",
        "gender": "m",
    }
    prepared = prepare_dataset(vivos / "metadata.csv", tmp_path / "v1", validation_from_train=0, progress=False)
    assert prepared.counts == {"train": 3, "validation": 0, "test": 1}
    assert prepared.skipped_by_reason == {"missing_file": 1}  # the prompt without audio is reported, not lost
    data = load_prepared(tmp_path / "v1")
    assert data["train"][0]["text"] == "khách sạn" and data["train"][2]["gender"] == "f"


def test_csv_outside_the_corpus_gets_absolute_paths_that_prepare_takes(vivos: Path, tmp_path: Path) -> None:
    result = import_vivos(vivos, tmp_path / "elsewhere" / "vivos.csv")
    assert Path(_rows(result.csv_path)[0]["file_path"]).is_absolute()
    assert "--audio-root" not in result.summary()  # the suggested next command needs no flag guessed
    prepared = prepare_dataset(result.csv_path, tmp_path / "v1", progress=False)
    assert sum(prepared.counts.values()) == 4 and prepared.skipped_by_reason == {"missing_file": 1}
    # An audio root the user names still confines every path, absolute ones included.
    confined = prepare_dataset(result.csv_path, tmp_path / "v2", audio_root=tmp_path / "elsewhere", progress=False)
    assert confined.skipped_by_reason == {"outside_root": 5}


def test_commonvoice_official_splits_and_validated(tmp_path: Path) -> None:
    root = tmp_path / "cv"
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment"
    tsvs = {
        "train": [
            "c1\tcv_1.mp3\tXin chào các bạn\t2\t0\ttwenties\tmale\t\tvi\t",
            "c1\tcv_2.mp3\tHôm nay\t2\t0\t\t\t\tvi\t",
        ],
        "dev": ['c2\tcv_3.mp3\t"Trời" đẹp quá\t3\t1\tthirties\tfemale\t\tvi\t'],
        "test": ["c3\tcv_4.mp3\tCảm ơn\t2\t0\t\t\t\tvi\t"],
    }
    tsvs["validated"] = [line for lines in tsvs.values() for line in lines]
    root.mkdir()
    for name, lines in tsvs.items():
        (root / f"{name}.tsv").write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    for index in range(1, 5):
        _audio(root / "clips" / f"cv_{index}.mp3", 1.2, 48000)

    result = import_commonvoice(root, root / "cv.csv")
    assert result.splits == {"train": 2, "validation": 1, "test": 1}
    rows = _rows(root / "cv.csv")
    assert rows[2]["transcript"] == '"Trời" đẹp quá' and rows[2]["speaker_id"] == "c2"  # quotes kept literally
    assert rows[0]["file_path"] == "clips/cv_1.mp3" and rows[0]["age"] == "twenties" and rows[0]["locale"] == "vi"
    prepared = prepare_dataset(root / "cv.csv", tmp_path / "v1", progress=False)
    assert prepared.counts == {"train": 2, "validation": 1, "test": 1} and prepared.skipped_rows == 0

    validated = import_commonvoice(root, root / "validated.csv", tsv="validated")
    assert validated.splits == {"": 4}
    auto = prepare_dataset(root / "validated.csv", tmp_path / "v2", auto_split_ratios="0.5,0.25,0.25", progress=False)
    assert sum(auto.counts.values()) == 4 and not auto.warnings


def test_folder_of_audio_with_transcripts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "folder"
    for speaker, name, text in [("anh", "a1", "xin chào"), ("anh", "a2", "cảm ơn"), ("binh", "b1", None)]:
        _audio(root / speaker / f"{name}.flac")
        if text:
            (root / speaker / f"{name}.txt").write_text(f"{text}\n", encoding="utf-8")
    (root / "notes.txt").write_text("not a transcript", encoding="utf-8")
    code = main(["import", "folder", str(root), "--output", str(root / "meta.csv"), "--speaker-from-folder"])
    out = capsys.readouterr().out
    assert code == 0 and "3 rows" in out and "1 audio file(s) have no .txt transcript" in out
    rows = _rows(root / "meta.csv")
    assert [(r["file_path"], r["transcript"], r["speaker_id"]) for r in rows] == [
        ("anh/a1.flac", "xin chào", "anh"),
        ("anh/a2.flac", "cảm ơn", "anh"),
        ("binh/b1.flac", "", "binh"),
    ]
    prepared = prepare_dataset(root / "meta.csv", tmp_path / "v1", progress=False)
    assert prepared.counts["train"] == 2 and prepared.skipped_by_reason == {"empty_transcript": 1}


def test_wrong_layouts_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(FileNotFoundError, match="not a VIVOS corpus"):
        import_vivos(tmp_path, tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="train.tsv"):
        import_commonvoice(tmp_path, tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError, match="No audio files"):
        import_folder(tmp_path, tmp_path / "x.csv")
    assert main(["import", "vivos", str(tmp_path), "--output", str(tmp_path / "x.csv")]) == 2
    assert "not a VIVOS corpus" in capsys.readouterr().err


def test_vivos_goes_from_import_to_training_with_no_flag_guessed(tmp_path: Path, capsys) -> None:
    """The guide's commands on a VIVOS layout outside the project: absolute paths in the CSV, no validation split."""
    from conftest import TINY_RECIPE

    corpus = tmp_path / "corpora" / "vivos"
    for split, speakers in (("train", 12), ("test", 2)):
        lines = []
        for s in range(speakers):
            speaker = f"VIVOS{'SPK' if split == 'train' else 'DEV'}{s:02d}"
            for u, text in enumerate(["KHÁCH SẠN", "HÔM NAY TRỜI ĐẸP"]):
                lines.append(f"{speaker}_R{u:03d} {text}")
                _audio(corpus / split / "waves" / speaker / f"{speaker}_R{u:03d}.wav", 1.0 + 0.5 * u)
        (corpus / split / "prompts.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    project = tmp_path / "project"
    assert main(["import", "vivos", str(corpus), "--output", str(project / "data" / "vivos.csv")]) == 0
    dataset = project / "data" / "processed" / "vivos"
    assert main(["prepare", "--csv", str(project / "data" / "vivos.csv"), "--output", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "Checked 28 rows: 28 kept + 0 skipped" in out and "became it" in out
    counts = load_prepared(dataset)
    assert len(counts["validation"]) > 0 and len(counts["test"]) == 4
    run = project / "runs" / "vivos"
    argv = ["train", "--recipe", str(TINY_RECIPE), "--dataset", str(dataset), "--output-dir", str(run),
            "--max_steps", "2", "--disable_tqdm"]  # fmt: skip
    assert main(argv) == 0
    assert (run / "model" / "config.json").is_file()
