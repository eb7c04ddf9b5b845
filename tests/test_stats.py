"""Dataset statistics: the API, the ``ai2text stats`` table and the guide's "Verify Data" snippet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ai2text_hf.cli import main
from ai2text_hf.data import dataset_statistics, prepare_dataset
from ai2text_hf.data import stats as stats_module

# (file, transcript, seconds, split, speaker)
ROWS = [
    ("a.wav", "Xin chào", 1.0, "train", "s1"),
    ("b.wav", "chào bạn", 2.0, "train", "s2"),
    ("c.wav", "xin bạn", 1.0, "val", "s3"),
    ("d.wav", "tạm biệt", 1.5, "test", "s4"),
    ("missing.wav", "không", 1.0, "test", "s4"),
]


@pytest.fixture(scope="module")
def version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stats")
    rng = np.random.default_rng(4)
    lines = ["file_path,transcript,duration,split,speaker_id"]
    for name, text, seconds, split, speaker in ROWS:
        if name != "missing.wav":
            t = np.arange(int(seconds * 16000)) / 16000
            sf.write(root / name, 0.3 * np.sin(2 * np.pi * 200 * t) + 0.05 * rng.standard_normal(t.size), 16000)
        lines.append(f"{name},{text},{seconds},{split},{speaker}")
    (root / "meta.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    prepare_dataset(root / "meta.csv", root / "data" / "processed" / "v1", progress=False)
    return root / "data" / "processed" / "v1"


def test_statistics_per_split(version: Path) -> None:
    stats = dataset_statistics(version)
    assert (stats["train_files"], stats["validation_files"], stats["test_files"]) == (2, 1, 1)
    assert stats["train_hours"] == pytest.approx(3.0 / 3600, abs=1e-6) and stats["total_files"] == 4
    assert (stats["train_mean_duration"], stats["train_min_duration"], stats["train_max_duration"]) == (1.5, 1.0, 2.0)
    assert stats["train_speakers"] == 2 and stats["skipped_rows"] == 1
    assert stats["train_chars_per_second"] == pytest.approx(16 / 3, abs=0.01)  # "xin chào" + "chào bạn"
    assert stats["train_alphabet_coverage"] == pytest.approx(len(set("xinchàobạn")) / 93, abs=1e-4)
    assert stats["validation_vocab_coverage"] == 1.0 and stats["test_vocab_coverage"] == 0.0  # "tạm biệt" unseen
    assert "train_vocab_coverage" not in stats
    assert stats == json.loads((version / "stats.json").read_text())  # what prepare wrote


def test_empty_split_statistics_are_zero() -> None:
    empty = {"duration": [], "text": [], "speaker_id": []}
    one = {"duration": [2.0], "text": ["a b"], "speaker_id": [""]}
    stats = stats_module.compute_statistics({"train": one, "validation": empty, "test": empty})
    assert stats["validation_files"] == 0 and stats["validation_mean_duration"] == 0.0
    assert stats["validation_vocab_coverage"] == 0.0
    assert stats["train_speakers"] == 0 and stats["train_chars_per_second"] == 1.5


def test_cli_table_and_json(version: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["stats", str(version)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^train\s+2\s+0\.001\s+2\s+1\.50\s+1\.00\s+2\.00\s+5\.3", table, re.M)
    assert re.search(r"^test\s+1\s.*0\.0%$", table, re.M) and "1 input rows skipped" in table
    assert main(["stats", str(version), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["validation_files"] == 1
    assert main(["stats", str(version.parent)]) == 2
    assert "not a prepared dataset" in capsys.readouterr().err


def test_guide_verify_snippet_prints_real_numbers(
    version: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    snippet = "\n".join(re.findall(r"^    (.*)$", stats_module.__doc__, re.M))  # the indented code block
    monkeypatch.chdir(version.parents[2])  # the snippet names data/processed/v1
    exec(snippet, {})
    assert capsys.readouterr().out == "Dataset Statistics:\nTrain: 2 files\nValidation: 1 files\nTest: 1 files\n"
