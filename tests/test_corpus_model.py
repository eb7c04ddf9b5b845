"""The corpus tools end to end with the small trained model: align, segment, clean, subtitles; and the real
keyword recordings of ../shared (skipped without them)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SHARED, TrainedModel

from ai2text_hf.cli import main
from ai2text_hf.corpus.align import Aligner, AlignItem
from ai2text_hf.corpus.clean import clean_metadata
from ai2text_hf.corpus.inputs import items_from_csv
from ai2text_hf.corpus.segment import segment_recording, segment_untranscribed
from ai2text_hf.data.audio import load_audio
from ai2text_hf.data.sources import read_metadata
from ai2text_hf.inference import Transcriber

SR = 16000
KEYWORDS = SHARED / "data" / "real-keywords-8k"


@pytest.fixture(scope="module")
def aligner(trained_model: TrainedModel) -> Aligner:
    return Aligner(Transcriber(trained_model.model_dir, device="cpu"))


def test_alignment_places_a_known_utterance_inside_its_sound(trained_model: TrainedModel, aligner: Aligner):
    row = trained_model.rows("train")[0]
    wave = load_audio(trained_model.corpus_dir / row["file_path"])[0]
    padded = np.concatenate([np.zeros(SR, np.float32), wave])
    (result,) = aligner.align([AlignItem("one", row["transcript"], waveform=padded)])
    assert result.error is None and len(result.words) == len(row["transcript"].split())
    assert result.words[0].start >= 1.0  # never in the second of silence put before it
    assert all(a.end <= b.start for a, b in zip(result.words, result.words[1:]))
    assert result.score > 0.3


def test_segment_cuts_a_joined_recording_back_into_its_utterances(trained_model: TrainedModel, aligner, tmp_path):
    rows = trained_model.rows("train")[:4]
    gap = np.zeros(SR // 2, np.float32)
    parts = [gap]
    for row in rows:
        parts += [load_audio(trained_model.corpus_dir / row["file_path"])[0], gap]
    sf.write(tmp_path / "talk.wav", np.concatenate(parts), SR)
    transcript = " ".join(row["transcript"] for row in rows)
    result = segment_recording(aligner, tmp_path / "talk.wav", transcript, tmp_path / "out")
    kept, _, _ = read_metadata(result.metadata)
    assert [r["transcript"] for r in kept] == [row["transcript"] for row in rows]
    with pytest.raises(ValueError, match="does not match"):
        unrelated = " ".join(r["transcript"] for r in trained_model.rows("test")[:4])
        segment_recording(aligner, tmp_path / "talk.wav", unrelated, tmp_path / "wrong")
    assert not (tmp_path / "wrong" / "metadata.csv").exists()


def test_clean_drops_swapped_transcripts(trained_model: TrainedModel, aligner, tmp_path: Path):
    rows = trained_model.rows("train")[:30]
    swapped = {3, 17}
    with (tmp_path / "metadata.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for index, row in enumerate(rows):
            text = rows[(index + 7) % len(rows)]["transcript"] if index in swapped else row["transcript"]
            writer.writerow({**row, "transcript": text})
    result = clean_metadata(aligner, tmp_path / "metadata.csv", audio_root=trained_model.corpus_dir)
    dropped = {line - 2 for line in result.reasons}
    assert swapped <= dropped and len(dropped) <= 4


def test_align_and_subtitle_commands_write_their_files(trained_model: TrainedModel, tmp_path: Path, capsys):
    row = trained_model.rows("test")[0]
    audio = str(trained_model.corpus_dir / row["file_path"])
    model = str(trained_model.model_dir)
    assert (
        main(["align", audio, "--text", row["transcript"], "--model", model, "--output", str(tmp_path / "a.json")]) == 0
    )
    assert (
        json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))["words"][0]["text"]
        == row["transcript"].split()[0]
    )
    assert main(["transcribe", audio, "--model", model, "--format", "srt"]) == 0
    assert capsys.readouterr().out.startswith("1\n00:00:")


def test_real_keyword_recordings_are_read_and_aligned(aligner: Aligner):
    if not (KEYWORDS / "metadata.csv").is_file():
        pytest.skip(f"{KEYWORDS} is not present (shared data only exists beside the project checkout)")
    items = list(items_from_csv(KEYWORDS / "metadata.csv"))[:3]
    results = list(aligner.align(items))
    assert all(r.error is None and r.duration > 0.5 and r.words for r in results)


def test_untranscribed_audio_is_cut_by_voice_activity_and_transcribed(trained_model: TrainedModel, tmp_path: Path):
    rows = trained_model.rows("train")[:3]
    gap = np.zeros(SR, np.float32)
    parts = [gap]
    for row in rows:
        parts += [load_audio(trained_model.corpus_dir / row["file_path"])[0], gap]
    sf.write(tmp_path / "talk.wav", np.concatenate(parts), SR)
    transcriber = Transcriber(trained_model.model_dir, device="cpu")
    result = segment_untranscribed(transcriber, tmp_path / "talk.wav", tmp_path / "out")
    kept, _, _ = read_metadata(result.metadata)
    assert len(kept) == 3 and all(r["transcript"] and float(r["score"]) > 0 for r in kept)
