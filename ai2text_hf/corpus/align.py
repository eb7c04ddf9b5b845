"""CTC forced alignment: word and character timings of a known transcript, with a score each.

The search is torchaudio's ``forced_align`` (Viterbi over the CTC graph). Its memory grows with frames x
labels (about 0.3 GB for 12 minutes in one piece, 10 GB for an hour), so a long input is cut first into
pieces of about ``chunk_seconds``: the model's own greedy transcript is matched word by word against the
reference, and runs of agreeing words become anchors where the audio and the text are cut together. A
stretch with no anchor for longer than ``max_gap_seconds`` is text the audio does not hold (or audio the
text does not): it is reported as unaligned rather than forced onto whatever audio is there. Within a piece,
words whose frames the model gives little probability to (``min_word_score``) are reported too.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jiwer
import numpy as np
import torch
import torchaudio.functional as AF

from ..data.audio import AudioDecodeError, load_audio
from ..inference import Transcriber, duration_batches
from .formats import FORMATS, CueOptions, Timed, to_csv, to_json, to_srt, to_textgrid, to_vtt
from .options import AlignOptions
from .text import AlignmentText, label_ids, prepare_text, unknown_characters


@dataclass
class CharTiming:
    char: str
    start: float
    end: float
    score: float
    word: int  # index into the alignment's normalised words


@dataclass
class WordTiming:
    """A word as written; ``start``/``end`` are None when it could not be aligned."""

    text: str
    normalized: str
    start: float | None
    end: float | None
    score: float

    @property
    def aligned(self) -> bool:
        return self.start is not None


@dataclass
class UnalignedSpan:
    """Consecutive written words ``[first, last]`` the audio does not seem to hold, and why."""

    first: int
    last: int
    text: str
    start: float | None
    end: float | None
    reason: str


@dataclass
class Alignment:
    """One input's alignment; ``error`` says why it has no timings at all (nothing else is filled then)."""

    name: str
    duration: float
    transcript: str
    words: list[WordTiming] = field(default_factory=list)
    chars: list[CharTiming] = field(default_factory=list)
    unaligned: list[UnalignedSpan] = field(default_factory=list)
    error: str | None = None
    model_cer: float = 1.0  # CER of the model's own transcript against the text (1 for text left unaligned)

    @property
    def score(self) -> float:
        """Mean word score (0 for an input that failed or has no words)."""
        return float(np.mean([w.score for w in self.words])) if self.words else 0.0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "duration": round(self.duration, 3),
            "transcript": self.transcript,
            "score": round(self.score, 4),
            "model_cer": round(self.model_cer, 4),
            "error": self.error,
            "words": [asdict(w) for w in self.words],
            "chars": [asdict(c) for c in self.chars],
            "unaligned": [asdict(u) for u in self.unaligned],
        }


@dataclass
class Piece:
    """Words ``[first, last)`` to align to frames ``[frame0, frame1)``, or the ``problem`` that prevents it."""

    first: int
    last: int
    frame0: int
    frame1: int
    problem: str = ""


@dataclass
class AlignItem:
    """An input to align: audio from ``path`` (or an in-memory ``waveform``) and its transcript."""

    name: str
    transcript: str
    path: Path | None = None
    waveform: np.ndarray | None = None


class Aligner:
    """Forced alignment with a loaded model (see the module docstring for how long inputs are handled)."""

    def __init__(self, transcriber: Transcriber, options: AlignOptions | None = None):
        self.transcriber = transcriber
        self.options = options or AlignOptions()
        self.tokenizer = transcriber.tokenizer
        self.tone_placement = transcriber.folder.tone_placement  # a foreign tokenizer has none: classic
        self.sampling_rate = transcriber.feature_extractor.sampling_rate
        self.frame_seconds = transcriber.seconds_per_frame
        self.blank = transcriber.model.config.pad_token_id
        self.delimiter = self.tokenizer.convert_tokens_to_ids(self.tokenizer.word_delimiter_token)
        self.id_to_char = {index: token for token, index in self.tokenizer.get_vocab().items()}

    # ----- emissions ---------------------------------------------------------------------------------

    def emissions(self, waveforms: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Per-frame log-probabilities (frames, vocab) of each waveform; short ones batched by duration,
        long ones cut in their pauses (:meth:`Transcriber.long_logits`: bounded memory, one frame grid)."""
        t = self.transcriber
        durations = [len(w) / self.sampling_rate for w in waveforms]
        out: list[torch.Tensor | None] = [None] * len(waveforms)
        short = [i for i, d in enumerate(durations) if d <= t.chunk_seconds]
        for batch in duration_batches([durations[i] for i in short], t.max_batch_seconds):
            indices = [short[i] for i in batch]
            logits, lengths = t.logits(t.inputs([waveforms[i] for i in indices]))
            for row, index in enumerate(indices):
                out[index] = torch.log_softmax(logits[row, : lengths[row]].float().cpu(), dim=-1)
        for index in (i for i, d in enumerate(durations) if d > t.chunk_seconds):
            out[index] = torch.log_softmax(t.long_logits(waveforms[index]), dim=-1)
        return out  # type: ignore[return-value]

    # ----- alignment ---------------------------------------------------------------------------------

    def check(self, text: AlignmentText, frames: int | None = None) -> str | None:
        """Why ``text`` cannot be aligned (to ``frames`` emission frames), or None."""
        if not text.words:
            return "empty transcript: nothing to align"
        unknown = unknown_characters(text, self.tokenizer)
        if unknown:
            return (
                f"the transcript has characters the model cannot emit: {' '.join(repr(c) for c in unknown)}; "
                "spell them out or remove them"
            )
        if frames is not None:
            needed = _min_frames(label_ids(text, self.tokenizer)[0])
            if needed > frames:
                return (
                    f"the audio is too short for its transcript: {frames} frames "
                    f"({frames * self.frame_seconds:.2f} s) but its {len(text.normalized)} characters need at "
                    f"least {needed} ({needed * self.frame_seconds:.2f} s); is it truncated or the wrong file?"
                )
        return None

    def align_emission(self, emission: torch.Tensor, transcript: str, name: str = "", duration: float | None = None):
        """Align ``transcript`` to one emission (frames, vocab); never raises for bad text or audio."""
        duration = emission.shape[0] * self.frame_seconds if duration is None else duration
        result = Alignment(name=name, duration=duration, transcript=transcript)
        text = prepare_text(transcript, self.tone_placement)
        result.error = self.check(text, emission.shape[0])
        if result.error:
            return result
        ids, owners = label_ids(text, self.tokenizer)
        word_starts = [i for i, owner in enumerate(owners) if owner >= 0 and (i == 0 or owners[i - 1] < 0)]
        chars: list[CharTiming] = []
        syllables: list[tuple[float | None, float | None, float]] = [(None, None, 0.0)] * len(text.words)
        failed: list[tuple[int, int, float | None, float | None, str]] = []
        errors = 0.0  # character errors of the model's transcript, piece by piece (bounded cost)
        pieces = self._pieces(emission, text.words)
        for piece in pieces:
            first, last, frame0, frame1 = piece.first, piece.last, piece.frame0, piece.frame1
            if first == last:
                continue  # audio with no words (silence or speech the text lacks)
            label_from = word_starts[first]
            label_to = word_starts[last] - 1 if last < len(text.words) else len(ids)
            piece_ids = ids[label_from:label_to]
            reference = " ".join(text.words[first:last])
            reason = piece.problem or self._piece_problem(piece_ids, frame1 - frame0)
            if reason:
                failed.append((first, last, frame0 * self.frame_seconds, frame1 * self.frame_seconds, reason))
                errors += len(reference)
                continue
            heard = " ".join(w for w, _, _ in self._greedy_words(emission[frame0:frame1]))
            # Both sides are already labels the model emits: no normaliser pass (the slowest step here otherwise).
            errors += jiwer.cer(reference, heard) * len(reference)
            path, scores = AF.forced_align(
                emission[None, frame0:frame1], torch.tensor([piece_ids], dtype=torch.int32), blank=self.blank
            )
            for (token, start, end, score), owner in zip(
                _token_spans(path[0], scores[0].exp(), self.blank), owners[label_from:label_to]
            ):
                if owner < 0:
                    continue
                chars.append(
                    CharTiming(
                        char=self.id_to_char[token],
                        start=round((frame0 + start) * self.frame_seconds, 3),
                        end=round((frame0 + end) * self.frame_seconds, 3),
                        score=round(score, 4),
                        word=owner,
                    )
                )
        by_word: dict[int, list[CharTiming]] = {}
        for char in chars:
            by_word.setdefault(char.word, []).append(char)
        for index, word_chars in by_word.items():
            syllables[index] = (
                word_chars[0].start,
                word_chars[-1].end,
                float(np.mean([c.score for c in word_chars])),
            )
        result.chars = chars
        result.words = [
            _written_timing(w.text, text.words[w.first : w.last], syllables[w.first : w.last]) for w in text.written
        ]
        result.unaligned = self._unaligned(text, result.words, failed)
        result.model_cer = errors / max(1, sum(len(" ".join(text.words[p.first : p.last])) for p in pieces))
        return result

    def _pieces(self, emission: torch.Tensor, words: list[str]) -> list[Piece]:
        """Pieces to align separately (see the module docstring): word runs the model hears nothing like are
        left out, and what remains is cut at anchors into pieces of about ``chunk_seconds``."""
        frames = emission.shape[0]
        hypothesis = self._greedy_words(emission)
        blocks = monotone_matches(words, [w for w, _, _ in hypothesis], self.options.anchor_words)
        # Regions alternate gap, block, gap, ..., gap: (first word, last word, first frame, last frame).
        regions, word, frame = [], 0, 0
        for block in blocks:
            start, end = hypothesis[block.b][1], hypothesis[block.b + block.size - 1][2]
            regions += [(word, block.a, frame, start), (block.a, block.a + block.size, start, end)]
            word, frame = block.a + block.size, end
        regions.append((word, len(words), frame, frames))
        # Speaking rate where the model and the text agree, in frames the model hears a label in (pauses do
        # not count): how many characters a gap's audio can hold.
        heard = torch.cumsum(emission.argmax(-1) != self.blank, 0).tolist()
        heard.insert(0, 0)
        block_chars = sum(len(w) + 1 for b in blocks for w in words[b.a : b.a + b.size])
        block_frames = sum(heard[end] - heard[start] for i, (_, _, start, end) in enumerate(regions) if i % 2)
        frames_per_char = block_frames / block_chars if block_chars else heard[-1] / (len(" ".join(words)) + 1)
        segments: list[Piece] = []
        for index, (first, last, frame0, frame1) in enumerate(regions):
            if index % 2 == 0:
                kept = self._fitting_words(
                    words[first:last], heard[frame1] - heard[frame0], frames_per_char, index, len(regions)
                )
                if kept is not None:
                    left, right = kept
                    middle = frame0 + (frame1 - frame0) * left // max(1, left + right)
                    self._extend(segments, Piece(first, first + left, frame0, middle))
                    chars = sum(len(w) + 1 for w in words[first + left : last - right])
                    problem = (
                        f"the model hears nothing like these words here ({(frame1 - frame0) * self.frame_seconds:.2f}"
                        f" s of audio between the words around them, for {chars} characters)"
                    )
                    segments.append(Piece(first + left, last - right, middle, middle, problem))
                    segments.append(Piece(last - right, last, middle, frame1))
                    continue
            self._extend(segments, Piece(first, last, frame0, frame1))
        anchors = []  # (word, frame) between two words of a block, where a piece may be cut
        for block in blocks:
            for k in range(1, block.size):
                gap = (hypothesis[block.b + k - 1][2] + hypothesis[block.b + k][1]) // 2
                anchors.append((block.a + k, gap))
        return [piece for segment in segments for piece in self._cut(segment, anchors)]

    @staticmethod
    def _extend(segments: list[Piece], piece: Piece) -> None:
        """Append ``piece``, merged into the previous one when both can be aligned."""
        if segments and not segments[-1].problem:
            segments[-1].last, segments[-1].frame1 = piece.last, piece.frame1
        elif piece.first < piece.last or piece.frame1 > piece.frame0:
            segments.append(piece)

    @staticmethod
    def _fitting_words(
        words: list[str], frames: int, frames_per_char: float, region: int, regions: int
    ) -> tuple[int, int] | None:
        """For a gap between agreeing blocks whose audio is too short for its words: how many words at its
        left and right edge the audio can hold (speech up to 1.5x slower than elsewhere); None when all fit."""
        budget = 1.5 * frames / frames_per_char
        if sum(len(w) + 1 for w in words) <= budget or len(words) < 2:
            return None
        # A gap at the start of the input keeps words at its right edge, at the end its left edge, else both.
        share = 0.0 if region == 0 else 1.0 if region == regions - 1 else 0.5
        left = right = 0
        used = 0.0
        while left < len(words) and used + len(words[left]) + 1 <= budget * share:
            used += len(words[left]) + 1
            left += 1
        used = 0.0
        while right < len(words) - left and used + len(words[-1 - right]) + 1 <= budget * (1 - share):
            used += len(words[-1 - right]) + 1
            right += 1
        return (left, right) if len(words) - left - right >= 2 else None

    def _cut(self, segment: Piece, anchors: list[tuple[int, int]]) -> list[Piece]:
        """``segment`` cut at anchors into pieces of at most about ``chunk_seconds`` where anchors allow; a
        piece longer than ``max_gap_seconds`` has no agreeing words to trust and is reported instead."""
        chunk = int(self.options.chunk_seconds / self.frame_seconds)
        if segment.problem or segment.frame1 - segment.frame0 <= 1.5 * chunk:
            return [segment]
        inside = [(w, f) for w, f in anchors if segment.first < w < segment.last]
        pieces, word, frame = [], segment.first, segment.frame0
        for index, (anchor_word, anchor_frame) in enumerate(inside):
            following = inside[index + 1][1] if index + 1 < len(inside) else segment.frame1
            if following - frame <= chunk:
                continue  # a later anchor still keeps this piece under chunk_seconds
            pieces.append(Piece(word, anchor_word, frame, anchor_frame))
            word, frame = anchor_word, anchor_frame
        pieces.append(Piece(word, segment.last, frame, segment.frame1))
        max_gap = self.options.max_gap_seconds
        for piece in pieces:
            if (piece.frame1 - piece.frame0) * self.frame_seconds > max_gap:
                piece.problem = f"no word the model agrees on for over {max_gap:.0f} s: the text and audio differ"
        return pieces

    def _greedy_words(self, emission: torch.Tensor) -> list[tuple[str, int, int]]:
        """The model's own words with their first and last (exclusive) frame, from the best path."""
        words: list[tuple[str, int, int]] = []
        current, start, end, previous = "", 0, 0, self.blank
        for frame, index in enumerate(emission.argmax(-1).tolist()):
            if index != previous and index != self.blank:
                if index == self.delimiter:
                    if current:
                        words.append((current, start, end))
                    current = ""
                else:
                    if not current:
                        start = frame
                    current += self.id_to_char[index]
            if index != self.blank and index != self.delimiter:
                end = frame + 1
            previous = index
        if current:
            words.append((current, start, end))
        return words

    def _piece_problem(self, ids: list[int], frames: int) -> str:
        needed = _min_frames(ids)
        if needed > frames:
            return f"{len(ids)} labels but only {frames} frames of audio between the surrounding words"
        return ""

    def _unaligned(
        self,
        text: AlignmentText,
        words: list[WordTiming],
        failed: list[tuple[int, int, float | None, float | None, str]],
    ) -> list[UnalignedSpan]:
        """Written-word spans of failed pieces, then runs of low-score words."""
        spans = []
        failed_written: set[int] = set()
        for first, last, start, end, reason in failed:
            w0 = _written_of(text, first)
            w1 = _written_of(text, last - 1)
            failed_written.update(range(w0, w1 + 1))
            spans.append(UnalignedSpan(w0, w1, " ".join(w.text for w in words[w0 : w1 + 1]), start, end, reason))
        run: list[int] = []
        for index, word in enumerate([*words, None]):
            low = word is not None and index not in failed_written and word.score < self.options.min_word_score
            if low:
                run.append(index)
                continue
            if run:
                spans.append(
                    UnalignedSpan(
                        run[0],
                        run[-1],
                        " ".join(words[i].text for i in run),
                        words[run[0]].start,
                        words[run[-1]].end,
                        f"score below {self.options.min_word_score}: the audio does not seem to hold these words",
                    )
                )
            run = []
        return sorted(spans, key=lambda s: s.first)

    def align(self, items: Iterable[AlignItem]) -> Iterator[Alignment]:
        """Align items one by one; a missing or unreadable file, or a transcript that cannot be aligned,
        gives an :class:`Alignment` with ``error`` set and the rest continues."""
        for item in items:
            waveform = item.waveform
            if waveform is None:
                try:
                    waveform = load_audio(item.path, self.sampling_rate)[0]  # type: ignore[arg-type]
                except (AudioDecodeError, OSError) as error:
                    yield Alignment(name=item.name, duration=0.0, transcript=item.transcript, error=str(error))
                    continue
            problem = self.check(prepare_text(item.transcript, self.tone_placement))
            if problem:  # before running the model: these need no audio to be reported
                yield Alignment(item.name, len(waveform) / self.sampling_rate, item.transcript, error=problem)
                continue
            (emission,) = self.emissions([waveform])
            yield self.snap(
                self.align_emission(emission, item.transcript, item.name, len(waveform) / self.sampling_rate),
                waveform,
            )

    def snap(self, result: Alignment, waveform: np.ndarray) -> Alignment:
        """Move word starts back and ends forward over audible sound, up to ``snap_seconds`` and never into
        the neighbouring word: CTC spikes sit inside words, the energy envelope shows where they begin."""
        if not self.options.snap_seconds or not result.words:
            return result
        level = _levels_db(waveform, self.sampling_rate // 100)
        limit = round(self.options.snap_seconds * 100)
        timed = [w for w in result.words if w.aligned]
        for index, word in enumerate(timed):
            previous_end = timed[index - 1].end if index else 0.0
            next_start = timed[index + 1].start if index + 1 < len(timed) else len(level) / 100
            start, end = round(word.start * 100), round(word.end * 100)
            # Sound means well above the local noise floor and not far below the local speech level.
            around = np.sort(level[max(0, start - 200) : end + 200])
            voiced = around[np.searchsorted(around, -90.0, side="right") :]  # not digital zero
            floor = _sorted_percentile(voiced, 10) if len(voiced) else -90.0
            threshold = max(floor + 12.0, _sorted_percentile(around, 99) - 30.0)
            low = max(round(previous_end * 100), start - limit, 0)
            high = min(round(next_start * 100), end + limit, len(level))
            quiet_before = np.flatnonzero(level[low:start] <= threshold)  # only the frames a boundary can move over
            start = low + quiet_before[-1] + 1 if len(quiet_before) else min(low, start)
            quiet_after = np.flatnonzero(level[end:high] <= threshold)
            end = end + quiet_after[0] if len(quiet_after) else max(end, high)
            word.start, word.end = start / 100, end / 100
        return result


def monotone_matches(
    words: Sequence[str], heard: Sequence[str], min_size: int, window: int = 200
) -> list[difflib.Match]:
    """Runs of at least ``min_size`` words that ``words`` (the text) and ``heard`` (the model's) share, matched a
    window of heard words at a time against the text just after the last run: text and audio advance together,
    so a repeated passage pairs with its own repetition and the cost grows linearly with the length."""
    matches: list[difflib.Match] = []
    text_from = 0
    for heard_from in range(0, len(heard), window):
        text_to = min(len(words), text_from + 4 * window)  # room for text the audio lacks, or reads faster
        matcher = difflib.SequenceMatcher(
            None, words[text_from:text_to], heard[heard_from : heard_from + window], autojunk=False
        )
        found = [m for m in matcher.get_matching_blocks() if m.size >= min_size]
        matches += [difflib.Match(text_from + m.a, heard_from + m.b, m.size) for m in found]
        if found:
            text_from += found[-1].a + found[-1].size
    return matches


def _levels_db(waveform: np.ndarray, hop: int, block: int = 100_000) -> np.ndarray:
    """Level (dB) of each ``hop``-sample frame, block by block: a float64 copy of an hour is 0.5 GB."""
    count = len(waveform) // hop
    level = np.empty(count, dtype=np.float64)
    for first in range(0, count, block):
        frames = np.asarray(waveform[first * hop : min(count, first + block) * hop], dtype=np.float32).reshape(-1, hop)
        level[first : first + len(frames)] = 10 * np.log10(np.einsum("ij,ij->i", frames, frames) / hop + 1e-10)
    return level


def _token_spans(path: torch.Tensor, probs: torch.Tensor, blank: int) -> list[tuple[int, int, int, float]]:
    """``(token, first frame, end frame, mean probability)`` of each label on a forced-alignment path, as
    ``torchaudio.functional.merge_tokens`` gives them but in a few tensor calls (it takes one per label)."""
    tokens, counts = torch.unique_consecutive(path, return_counts=True)
    ends = torch.cumsum(counts, 0)
    starts = ends - counts
    sums = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(probs.double(), 0)])
    means = (sums[ends] - sums[starts]) / counts
    keep = tokens != blank
    return list(
        zip(tokens[keep].tolist(), starts[keep].tolist(), ends[keep].tolist(), means[keep].tolist(), strict=True)
    )


def _sorted_percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear) of sorted ``values``, without its per-call overhead (once per word)."""
    position = q / 100 * (len(values) - 1)
    below = int(position)
    above = min(below + 1, len(values) - 1)
    return float(values[below] + (values[above] - values[below]) * (position - below))


def _min_frames(ids: Sequence[int]) -> int:
    """Frames a CTC path needs: one per label plus a blank between repeated labels."""
    return len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))


def _written_of(text: AlignmentText, normalized_index: int) -> int:
    return next(i for i, w in enumerate(text.written) if w.first <= normalized_index < w.last)


def _written_timing(
    written: str, normalized: list[str], syllables: list[tuple[float | None, float | None, float]]
) -> WordTiming:
    starts = [s for s, _, _ in syllables if s is not None]
    ends = [e for _, e, _ in syllables if e is not None]
    return WordTiming(
        text=written,
        normalized=" ".join(normalized),
        start=min(starts) if starts else None,
        end=max(ends) if ends else None,
        score=round(float(np.mean([score for _, _, score in syllables])), 4),
    )


def render(alignment: Alignment, fmt: str, cue_options: CueOptions | None = None) -> str:
    """``alignment`` in one of :data:`~.formats.FORMATS` (timeless words are left out of the timed formats)."""
    words = [Timed(w.text, w.start, w.end, w.score) for w in alignment.words if w.aligned]  # type: ignore[arg-type]
    if fmt == "json":
        return to_json(alignment.to_dict())
    if fmt == "srt":
        return to_srt(words, cue_options)
    if fmt == "vtt":
        return to_vtt(words, cue_options)
    if fmt == "textgrid":
        chars = [Timed(c.char, c.start, c.end, c.score) for c in alignment.chars]
        return to_textgrid({"words": words, "chars": chars}, alignment.duration)
    if fmt == "csv":
        rows = [
            {"word": w.text, "normalized": w.normalized, "start": w.start, "end": w.end, "score": w.score}
            for w in alignment.words
        ]
        return to_csv(rows)
    raise ValueError(f"Unknown format {fmt!r}; choose from {', '.join(FORMATS)}.")
