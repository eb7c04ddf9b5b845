"""``ai2text clean``: thresholds, the reasons a row is dropped, and the filtered CSV it writes."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_corpus_align import aligner, tiny_model  # noqa: F401  (fixtures)

from ai2text_hf.cli import main
from ai2text_hf.corpus.clean import RowScore, clean_metadata, reasons_for, thresholds
from ai2text_hf.corpus.options import CleanOptions
from ai2text_hf.data.sources import read_metadata

SR = 16000


def scored(loss: float, cer: float, align: float = 0.8, cps: float = 12.0, mismatch: float = 0.0) -> RowScore:
    return RowScore(0, "a.wav", "xin chào", 2.0, loss, cer, align, cps, mismatch)


def test_automatic_thresholds_flag_outliers_but_not_a_clean_corpus():
    rng = np.random.default_rng(0)
    clean = [scored(float(loss), float(cer)) for loss, cer in zip(rng.uniform(0.2, 0.6, 200), rng.uniform(0, 0.2, 200))]
    limits = thresholds(clean, CleanOptions())
    assert not any(reasons_for(s, limits, strict=True) for s in clean)
    assert reasons_for(scored(8.0, 0.9), limits, strict=False) == [
        f"loss per character 8.000 > {limits['max_loss_per_char']:.3f}",
        f"CER against the model's transcript 0.900 > {limits['max_cer']:.3f}",
    ]
    assert thresholds(clean, CleanOptions(max_cer=0.05))["max_cer"] == 0.05


def test_every_criterion_gives_its_own_reason():
    limits = thresholds([scored(0.3, 0.1)], CleanOptions())
    assert reasons_for(scored(0.3, 0.1, align=0.01), limits, strict=True)[0].startswith("alignment score 0.010 <")
    assert reasons_for(scored(0.3, 0.1, cps=40.0), limits, strict=True)[0].startswith("characters per second 40.000 >")
    assert reasons_for(scored(0.3, 0.1, mismatch=2.0), limits, strict=True)[0].startswith("declared duration differs")
    assert reasons_for(scored(math.inf, 0.1), limits, strict=True)[0].startswith("loss per character inf >")


def test_a_best_path_measurement_alone_drops_a_row_only_when_strict():
    """CER and alignment score read the model's best path: one alone is a misheard clean row as often as a bad one."""
    limits = thresholds([scored(0.3, 0.1)], CleanOptions())
    for alone in (scored(0.3, 0.9), scored(0.3, 0.1, align=0.01)):
        assert reasons_for(alone, limits, strict=False) == [] and reasons_for(alone, limits, strict=True)
    assert len(reasons_for(scored(0.3, 0.9, align=0.01), limits, strict=False)) == 2  # the two together
    assert reasons_for(scored(8.0, 0.1), limits, strict=False)[0].startswith("loss per character")  # alone
    assert reasons_for(scored(0.3, 0.1, cps=40.0), limits, strict=False)[0].startswith("characters per second")


def write_rows(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    path = folder / "metadata.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_path", "transcript", "duration"])
        writer.writerows(rows)
    return path


def test_clean_writes_the_kept_rows_and_every_dropped_row_with_its_reason(aligner, tmp_path: Path):  # noqa: F811
    (tmp_path / "wavs").mkdir()
    wave = (0.05 * np.random.default_rng(1).standard_normal(2 * SR)).astype(np.float32)
    sf.write(tmp_path / "wavs" / "a.wav", wave, SR)
    source = write_rows(
        tmp_path,
        [
            ("wavs/a.wav", "xin chào", "2.0"),
            ("wavs/missing.wav", "xin chào", "2.0"),
            ("wavs/a.wav", "", "2.0"),
            ("wavs/a.wav", "xin ☃", "2.0"),
            ("wavs/a.wav", "xin chào", "9.0"),
        ],
    )
    # A random model: only the checks that need no trained model decide here.
    model_blind = CleanOptions(max_loss_per_char=math.inf, max_cer=math.inf, min_align_score=0.0)
    result = clean_metadata(aligner, source, tmp_path / "out" / "clean.csv", options=model_blind)
    rows, header, _ = read_metadata(result.kept)
    assert header == ["file_path", "transcript", "duration"]
    assert [r["file_path"] for r in rows] == ["../wavs/a.wav"]  # still resolves from the new folder
    with result.report.open(encoding="utf-8") as handle:
        dropped = {int(r["line"]): r["reasons"] for r in csv.DictReader(handle)}
    assert sorted(dropped) == [3, 4, 5, 6]
    assert "not found" in dropped[3] and "empty transcript" in dropped[4] and "'☃'" in dropped[5]
    assert "declared duration differs from the audio by (s) 7.000" in dropped[6]
    with pytest.raises(FileExistsError):
        clean_metadata(aligner, source, tmp_path / "out" / "clean.csv")


def test_clean_command_never_overwrites_its_input(tiny_model: Path, tmp_path: Path, capsys):  # noqa: F811
    source = write_rows(tmp_path, [("a.wav", "xin chào", "2.0")])
    code = main(["clean", str(source), "--model", str(tiny_model), "--output", str(source)])
    assert code == 2 and "already exists" in capsys.readouterr().err
    assert source.read_text(encoding="utf-8").count("\n") == 2
