"""``ai2text segment``: a long recording into training utterances, with a metadata CSV ``prepare`` reads.

With a transcript, the recording is force-aligned (:mod:`.align`) and cut at pauses between words into
utterances of at most ``max_seconds``; text the audio does not hold, and utterances that align badly, are
listed in ``excluded.csv`` and left out. A transcript that does not match the recording at all is an error,
and nothing is written. Without a transcript, silero-vad finds the speech and the model transcribes each
part (pseudo-labels to review: their ``confidence`` column says how sure the model was).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..data.audio import load_audio
from ..inference import Transcriber
from .align import Aligner, Alignment, WordTiming
from .options import SegmentOptions


@dataclass
class Cut:
    """One utterance (or excluded stretch) of the recording."""

    start: float
    end: float
    text: str
    score: float
    reason: str = ""  # why it is excluded; empty for a kept utterance


def plan_cuts(alignment: Alignment, options: SegmentOptions) -> tuple[list[Cut], list[Cut]]:
    """Kept utterances and excluded stretches of one aligned recording (see the module docstring)."""
    if alignment.error:
        raise ValueError(f"{alignment.name}: {alignment.error}")
    # A lone low-score word inside aligned speech is usually the model mishearing it: it stays in its
    # utterance (whose mean score drops); longer runs and stretches that could not be aligned are cut out.
    dropped = [s for s in alignment.unaligned if s.last > s.first or s.start is None or s.start == s.end]
    unaligned = {i for span in dropped for i in range(span.first, span.last + 1)}
    good = sum(w.aligned and i not in unaligned for i, w in enumerate(alignment.words))
    if good < options.min_aligned_share * len(alignment.words) or alignment.model_cer > options.max_model_cer:
        raise ValueError(
            f"{alignment.name}: the transcript does not match the audio: only {good} of its "
            f"{len(alignment.words)} words align (mean score {alignment.score:.2f}) and the model's own transcript "
            f"differs from it by {alignment.model_cer:.0%} of its characters. Check that the text belongs "
            "to this recording; nothing was written."
        )
    excluded = [Cut(s.start or 0.0, s.end or 0.0, s.text, 0.0, s.reason) for s in dropped]
    runs: list[list[WordTiming]] = [[]]
    for index, word in enumerate(alignment.words):
        if index in unaligned or not word.aligned:
            runs.append([])
        else:
            runs[-1].append(word)
    groups = [g for run in runs if run for g in _split(run, options)]
    groups = _merge_short(groups, options)
    kept: list[Cut] = []
    for index, group in enumerate(groups):
        previous_end = groups[index - 1][-1].end if index else 0.0
        next_start = groups[index + 1][0].start if index + 1 < len(groups) else alignment.duration
        start = max(group[0].start - options.padding_seconds, (previous_end + group[0].start) / 2, 0.0)
        end = min(group[-1].end + options.padding_seconds, (group[-1].end + next_start) / 2, alignment.duration)
        score = float(np.mean([w.score for w in group]))
        cut = Cut(round(start, 3), round(end, 3), " ".join(w.text for w in group), round(score, 4))
        if score < options.min_score:
            cut.reason = f"mean word score {score:.2f} is below {options.min_score}"
            excluded.append(cut)
        else:
            kept.append(cut)
    return kept, sorted(excluded, key=lambda c: c.start)


def _split(words: list[WordTiming], options: SegmentOptions) -> list[list[WordTiming]]:
    """Words cut at every pause of ``pause_seconds``, then pieces still too long at their longest pause."""
    pieces: list[list[WordTiming]] = [[words[0]]]
    for previous, word in zip(words, words[1:]):
        if word.start - previous.end >= options.pause_seconds:  # type: ignore[operator]
            pieces.append([])
        pieces[-1].append(word)
    result = []
    while pieces:
        piece = pieces.pop(0)
        if piece[-1].end - piece[0].start <= options.max_seconds or len(piece) == 1:  # type: ignore[operator]
            result.append(piece)
            continue
        gaps = [b.start - a.end for a, b in zip(piece, piece[1:])]  # type: ignore[operator]
        cut = int(np.argmax(gaps)) + 1
        pieces[:0] = [piece[:cut], piece[cut:]]
    return result


def _merge_short(groups: list[list[WordTiming]], options: SegmentOptions) -> list[list[WordTiming]]:
    """Utterances under ``min_seconds`` joined to the neighbour across the shorter pause, within max."""
    merged = list(groups)
    index = 0
    while index < len(merged):
        group = merged[index]
        if group[-1].end - group[0].start >= options.min_seconds:  # type: ignore[operator]
            index += 1
            continue
        candidates = []
        if index > 0:
            candidates.append((group[0].start - merged[index - 1][-1].end, index - 1))
        if index + 1 < len(merged):
            candidates.append((merged[index + 1][0].start - group[-1].end, index + 1))
        for _, other in sorted(candidates):
            first, second = sorted((index, other))
            joined = merged[first] + merged[second]
            if joined[-1].end - joined[0].start <= options.max_seconds:  # type: ignore[operator]
                merged[first : second + 1] = [joined]
                index = first
                break
        else:
            index += 1
    return merged


@dataclass
class SegmentResult:
    metadata: Path
    kept: list[Cut]
    excluded: list[Cut]
    excluded_report: Path


def write_corpus(
    waveform: np.ndarray,
    sampling_rate: int,
    cuts: Sequence[Cut],
    excluded: Sequence[Cut],
    output_dir: Path,
    stem: str,
    speaker_id: str = "",
) -> SegmentResult:
    """One WAV per cut under ``output_dir/wavs``, ``metadata.csv`` (file_path, transcript, duration,
    speaker_id, then source/start/end/score: the alignment score, or the model's confidence for a
    transcript it wrote) and ``excluded.csv``. Refuses to overwrite an existing
    metadata.csv."""
    metadata = output_dir / "metadata.csv"
    if metadata.exists():
        raise FileExistsError(f"{metadata} already exists: choose another --output folder or remove it first.")
    (output_dir / "wavs").mkdir(parents=True, exist_ok=True)
    rows = []
    for index, cut in enumerate(cuts, start=1):
        name = f"wavs/{stem}-{index:05d}.wav"
        piece = waveform[round(cut.start * sampling_rate) : round(cut.end * sampling_rate)]
        sf.write(output_dir / name, piece, sampling_rate, subtype="PCM_16")
        rows.append(
            {
                "file_path": name,
                "transcript": cut.text,
                "duration": f"{len(piece) / sampling_rate:.3f}",
                "speaker_id": speaker_id,
                "source": stem,
                "start": f"{cut.start:.3f}",
                "end": f"{cut.end:.3f}",
                "score": f"{cut.score:.4f}",
            }
        )
    _write_csv(metadata, rows, ["file_path", "transcript", "duration", "speaker_id", "source", "start", "end"])
    report = output_dir / "excluded.csv"
    _write_csv(
        report,
        [{"source": stem, "start": c.start, "end": c.end, "text": c.text, "reason": c.reason} for c in excluded],
        ["source", "start", "end", "text", "reason"],
    )
    return SegmentResult(metadata, list(cuts), list(excluded), report)


def _write_csv(path: Path, rows: list[dict], header: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else header)
        writer.writeheader()
        writer.writerows(rows)


def segment_recording(
    aligner: Aligner,
    audio: Path,
    transcript: str,
    output_dir: Path,
    options: SegmentOptions | None = None,
    speaker_id: str = "",
) -> SegmentResult:
    """Align ``audio`` to ``transcript`` and write the cut corpus (see the module docstring)."""
    options = options or SegmentOptions()
    waveform = load_audio(audio, aligner.sampling_rate)[0]
    (emission,) = aligner.emissions([waveform])
    alignment = aligner.snap(
        aligner.align_emission(emission, transcript, str(audio), len(waveform) / aligner.sampling_rate), waveform
    )
    kept, excluded = plan_cuts(alignment, options)
    return write_corpus(waveform, aligner.sampling_rate, kept, excluded, output_dir, audio.stem, speaker_id)


def speech_regions(waveform: np.ndarray, sampling_rate: int, options: SegmentOptions) -> list[tuple[float, float]]:
    """(start, end) seconds of speech found by silero-vad, each at most ``max_seconds``."""
    import torch

    threads = torch.get_num_threads()
    from silero_vad import get_speech_timestamps, load_silero_vad

    torch.set_num_threads(threads)  # importing silero-vad sets one thread for the whole process

    if sampling_rate != 16000:
        raise ValueError(f"silero-vad reads 16 kHz audio; this model's feature extractor uses {sampling_rate} Hz.")
    found = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32)),
        load_silero_vad(),
        sampling_rate=sampling_rate,
        max_speech_duration_s=options.max_seconds,
        min_silence_duration_ms=round(1000 * options.pause_seconds),
        speech_pad_ms=round(1000 * options.padding_seconds),
    )
    return [(s["start"] / sampling_rate, s["end"] / sampling_rate) for s in found]


def segment_untranscribed(
    transcriber: Transcriber,
    audio: Path,
    output_dir: Path,
    options: SegmentOptions | None = None,
    speaker_id: str = "",
) -> SegmentResult:
    """Voice-activity segmentation, then each part transcribed by the model (its confidence in the ``score``
    column); parts where the model hears no words are excluded."""
    options = options or SegmentOptions()
    sr = transcriber.feature_extractor.sampling_rate
    waveform = load_audio(audio, sr)[0]
    regions = speech_regions(waveform, sr, options)
    decoded = transcriber.transcribe_arrays([waveform[round(s * sr) : round(e * sr)] for s, e in regions], False)
    kept, excluded = [], []
    for (start, end), result in zip(regions, decoded):
        cut = Cut(round(start, 3), round(end, 3), result.text, round(result.confidence, 4))
        if result.text:
            kept.append(cut)
        else:
            cut.reason = "voice activity, but the model heard no words"
            excluded.append(cut)
    return write_corpus(waveform, sr, kept, excluded, output_dir, audio.stem, speaker_id)
