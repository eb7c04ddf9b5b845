"""``ai2text doctor``: a row whose transcript does not match its audio must rank at the top."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from conftest import TrainedModel

from ai2text_hf.cli import main
from ai2text_hf.data import prepare_dataset
from ai2text_hf.evaluation.doctor import diagnose

ROWS = 30


@pytest.fixture(scope="module")
def swapped(trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """30 training utterances of the fixture model, one given another sentence's transcript."""
    root = tmp_path_factory.mktemp("doctor")
    rows = trained_model.rows("train")[:ROWS]
    victim = max(rows, key=lambda row: float(row["duration"]))  # long enough for any other transcript
    partner = min((r for r in rows if r["transcript"] != victim["transcript"]), key=lambda r: len(r["transcript"]))
    victim["transcript"] = partner["transcript"]
    with open(root / "meta.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(victim))
        writer.writeheader()
        writer.writerows(rows)
    # Every row stays in train (no validation split carved from it): the ranking is over these 30 alone.
    result = prepare_dataset(
        root / "meta.csv", root / "v1", audio_root=trained_model.corpus_dir, validation_from_train=0, progress=False
    )
    assert result.counts["train"] == ROWS, result.skipped_by_reason
    return root / "v1", Path(victim["file_path"]).stem


def test_swapped_transcript_ranks_first(trained_model: TrainedModel, swapped: tuple[Path, str]) -> None:
    dataset, victim = swapped
    suspects = diagnose(trained_model.model_dir, dataset)
    assert len(suspects) == ROWS and suspects[0].id == victim
    losses = sorted(s.loss_per_char for s in suspects)
    assert math.isfinite(suspects[0].loss_per_char) and suspects[0].loss_per_char > 3 * losses[ROWS // 2]
    assert suspects[0].cer > 0.5 and suspects[0].text != suspects[0].hypothesis
    by_cer = diagnose(trained_model.model_dir, dataset, splits=["train"], sort_by="cer", limit=ROWS)
    assert victim in [s.id for s in by_cer[:3]]
    assert [s.cer for s in by_cer] == sorted((s.cer for s in by_cer), reverse=True)


def test_cli_prints_the_worst_and_writes_all_scores(
    trained_model: TrainedModel, swapped: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dataset, victim = swapped
    argv = ["doctor", "--model", str(trained_model.model_dir), "--dataset", str(dataset), "--top", "3"]
    assert main([*argv, "--output", str(tmp_path / "scores.csv")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[-1] == victim and f"All {ROWS} scores written" in out
    with open(tmp_path / "scores.csv", encoding="utf-8") as handle:
        scores = list(csv.DictReader(handle))
    assert len(scores) == ROWS and scores[0]["rank"] == "1" and scores[0]["id"] == victim
    assert main([*argv, "--split", "nosuch"]) == 2 and "No split 'nosuch'" in capsys.readouterr().err
