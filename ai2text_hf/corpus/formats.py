"""Timed words written as JSON, SRT, WebVTT, Praat TextGrid and CSV.

The subtitle formats group words into cues (a pause, a length or a duration limit closes one); TextGrid
gets a word tier and a character tier with empty intervals in between, as Praat expects tiers to tile the
file. Written by hand: each is a few lines of a plain-text format, and the libraries that exist for them
(pysrt, webvtt-py, praatio) would each add a dependency for one function.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

FORMATS = ("json", "srt", "vtt", "textgrid", "csv")


@dataclass(frozen=True)
class Timed:
    """One word (or character) on the timeline."""

    text: str
    start: float
    end: float
    score: float | None = None


@dataclass
class CueOptions:
    """How subtitle cues are formed from words."""

    max_chars: int = 42  # a common broadcast limit for one subtitle line
    max_seconds: float = 6.0
    pause_seconds: float = 0.6  # a pause at least this long starts a new cue


def cues(words: Sequence[Timed], options: CueOptions | None = None) -> list[Timed]:
    """Words grouped into subtitle cues."""
    options = options or CueOptions()
    grouped: list[list[Timed]] = []
    for word in words:
        current = grouped[-1] if grouped else None
        if (
            current is None
            or word.start - current[-1].end >= options.pause_seconds
            or word.end - current[0].start > options.max_seconds
            or len(" ".join(w.text for w in current)) + 1 + len(word.text) > options.max_chars
        ):
            grouped.append([word])
        else:
            current.append(word)
    return [Timed(" ".join(w.text for w in group), group[0].start, group[-1].end) for group in grouped]


def _clock(seconds: float, separator: str) -> str:
    milliseconds = round(seconds * 1000)
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def to_srt(words: Sequence[Timed], options: CueOptions | None = None) -> str:
    blocks = [
        f"{index}\n{_clock(cue.start, ',')} --> {_clock(cue.end, ',')}\n{cue.text}\n"
        for index, cue in enumerate(cues(words, options), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(words: Sequence[Timed], options: CueOptions | None = None) -> str:
    blocks = [f"{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}\n{cue.text}\n" for cue in cues(words, options)]
    return "\n".join(["WEBVTT\n", *blocks])


#: Subtitle formats of word timings, by file extension.
SUBTITLE_FORMATS = {"srt": to_srt, "vtt": to_vtt}


def word_subtitles(words: Sequence[dict], fmt: str) -> str:
    """SRT or WebVTT of word timings as the Transcriber and the server give them (``{"word", "start", "end"}``)."""
    return SUBTITLE_FORMATS[fmt]([Timed(w["word"], w["start"], w["end"]) for w in words])


def to_textgrid(tiers: dict[str, Sequence[Timed]], duration: float) -> str:
    """A Praat TextGrid (long text format) with one interval tier per entry of ``tiers``."""
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0",
        f"xmax = {duration}",
        "tiers? <exists>",
        f"size = {len(tiers)}",
        "item []:",
    ]
    for number, (name, items) in enumerate(tiers.items(), start=1):
        intervals = _tile(items, duration)
        lines += [
            f"    item [{number}]:",
            '        class = "IntervalTier"',
            f'        name = "{name}"',
            "        xmin = 0",
            f"        xmax = {duration}",
            f"        intervals: size = {len(intervals)}",
        ]
        for index, (start, end, text) in enumerate(intervals, start=1):
            escaped = text.replace('"', '""')
            lines += [
                f"        intervals [{index}]:",
                f"            xmin = {start}",
                f"            xmax = {end}",
                f'            text = "{escaped}"',
            ]
    return "\n".join(lines) + "\n"


def _tile(items: Sequence[Timed], duration: float) -> list[tuple[float, float, str]]:
    """Intervals covering ``[0, duration]`` without overlap: the items, and empty ones between them."""
    intervals: list[tuple[float, float, str]] = []
    cursor = 0.0
    for item in sorted(items, key=lambda i: i.start):
        start, end = max(item.start, cursor), min(max(item.end, item.start), duration)
        if end <= start:
            continue
        if start > cursor:
            intervals.append((cursor, start, ""))
        intervals.append((start, end, item.text))
        cursor = end
    if cursor < duration or not intervals:
        intervals.append((cursor, duration, ""))
    return intervals


def to_csv(rows: Sequence[dict]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def to_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2) + "\n"
