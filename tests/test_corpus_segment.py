"""``ai2text segment``: where an aligned recording is cut, what is left out, and the corpus it writes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ai2text_hf.corpus.align import Alignment, UnalignedSpan, WordTiming
from ai2text_hf.corpus.options import SegmentOptions
from ai2text_hf.corpus.segment import plan_cuts, write_corpus
from ai2text_hf.data.sources import read_metadata

SR = 16000


def aligned(words: list[tuple[str, float, float]], duration: float, **fields) -> Alignment:
    timings = [WordTiming(text, text.lower(), start, end, 0.9) for text, start, end in words]
    fields.setdefault("model_cer", 0.1)
    return Alignment("recording", duration, " ".join(w for w, _, _ in words), words=timings, **fields)


def sentence(first: str, start: float, count: int) -> list[tuple[str, float, float]]:
    """``count`` words of 0.25 s with 0.05 s between them, starting at ``start``."""
    return [(f"{first}{i}", start + 0.3 * i, start + 0.3 * i + 0.25) for i in range(count)]


def test_cuts_fall_in_pauses_and_keep_each_utterance_whole():
    words = sentence("a", 0.5, 6) + sentence("b", 3.0, 8) + sentence("c", 6.0, 5)
    options = SegmentOptions()
    kept, excluded = plan_cuts(aligned(words, 8.0), options)
    assert [c.text.split()[0] for c in kept] == ["a0", "b0", "c0"] and excluded == []
    pad = options.padding_seconds  # the first words are 0.5-2.25 s, far from any neighbour
    assert kept[0].start == pytest.approx(0.5 - pad) and kept[0].end == pytest.approx(2.25 + pad)
    assert all(a.end <= b.start for a, b in zip(kept, kept[1:]))


def test_utterances_longer_than_max_are_cut_at_their_longest_pause():
    words = sentence("a", 0.0, 10) + [("mid", 3.3, 3.5)] + sentence("b", 3.55, 10)
    kept, _ = plan_cuts(aligned(words, 7.0), SegmentOptions(max_seconds=4.0))
    assert [len(c.text.split()) for c in kept] == [10, 11]
    assert all(c.end - c.start <= 4.0 for c in kept)


def test_text_that_did_not_align_is_listed_and_left_out():
    words = sentence("a", 0.5, 6) + [("x", None, None), ("y", None, None)] + sentence("b", 2.5, 6)
    span = UnalignedSpan(6, 7, "x y", 2.3, 2.3, "the model hears nothing like these words here")
    kept, excluded = plan_cuts(aligned(words, 5.0, unaligned=[span]), SegmentOptions())
    assert all("x" not in c.text.split() for c in kept)
    assert [c.text for c in excluded] == ["x y"] and "hears nothing" in excluded[0].reason


def test_a_transcript_that_does_not_match_the_audio_is_refused():
    words = [(f"w{i}", None, None) for i in range(10)] + sentence("a", 0.5, 3)
    span = UnalignedSpan(0, 9, "w0 ... w9", None, None, "no word the model agrees on")
    with pytest.raises(ValueError, match="does not match the audio"):
        plan_cuts(aligned(words, 5.0, unaligned=[span]), SegmentOptions())
    every_word_timed = sentence("a", 0.5, 6)
    with pytest.raises(ValueError, match="differs from it by 90%"):
        plan_cuts(aligned(every_word_timed, 3.0, model_cer=0.9), SegmentOptions())


def test_the_corpus_is_a_metadata_csv_prepare_reads_and_is_never_overwritten(tmp_path: Path):
    wave = np.zeros(5 * SR, dtype=np.float32)
    kept, excluded = plan_cuts(aligned(sentence("a", 0.5, 6) + sentence("b", 3.0, 5), 5.0), SegmentOptions())
    result = write_corpus(wave, SR, kept, excluded, tmp_path, "talk")
    rows, header, _ = read_metadata(result.metadata)
    assert header[:4] == ["file_path", "transcript", "duration", "speaker_id"]
    assert [r["file_path"] for r in rows] == ["wavs/talk-00001.wav", "wavs/talk-00002.wav"]
    assert all((tmp_path / r["file_path"]).is_file() for r in rows)
    with open(result.excluded_report, encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == ["source", "start", "end", "text", "reason"]
    with pytest.raises(FileExistsError, match="already exists"):
        write_corpus(wave, SR, kept, excluded, tmp_path, "talk")
