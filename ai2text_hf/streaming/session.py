"""Streaming sessions: the recognizer, its sessions and their events.

A :class:`StreamingRecognizer` holds one model trained for streaming (``recipes/streaming-cpu.yaml``: causal front
end and convolutions, dynamic chunk training, causal feature normalisation, no pitch); each
:class:`StreamingSession` is one audio stream. Audio goes in in blocks of any size; every ``chunk_ms`` of it runs
one encoder step (:meth:`AI2TextForCTC.forward_chunk`) whose cost is bounded by the cached left context, so it does
not grow with the stream. Out come :class:`StreamEvent` s: partials (the current utterance so far) and finals
(an utterance ended by an endpoint: trailing silence by silero-vad, or a run of CTC blanks).

The encoder state is kept across utterances (the stream is one signal and the left context is bounded); only the
decoder restarts after a final. Streaming output equals the model's full forward pass with the same chunk mask
(``model(features, chunk_size=..., left_chunks=...)``) over the whole stream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..configuration_ai2text import AI2TextConfig
from ..decoding.core import DecodedUtterance, utterance_from_path
from ..inference import ModelFolder, join_utterances, load_model_folder
from ..modeling_ai2text import AI2TextForCTC
from .onnx import STEP_NAME, OnnxStreamingStep
from .options import STREAMING_RECIPE, StreamingOptions

# silero-vad reads windows of this many samples at 16 kHz (its model's fixed input).
VAD_WINDOW = 512


class StreamingNotSupportedError(ValueError):
    """The model folder cannot stream (trained without chunks, or its features need future audio)."""


@dataclass
class StreamEvent:
    """A partial or final result of one utterance, times in seconds from the start of the stream."""

    type: Literal["partial", "final"]
    text: str
    utterance: int
    start: float
    end: float
    words: list[dict] = field(default_factory=list)  # {"word", "start", "end", "confidence"}

    def to_dict(self) -> dict:
        return asdict(self)


def _refuse(path: Path, reason: str) -> StreamingNotSupportedError:
    return StreamingNotSupportedError(
        f"{path} cannot stream: {reason}. Train a streaming model with {STREAMING_RECIPE} (causal front end and "
        "convolutions, dynamic chunk training, causal feature normalisation, no pitch), or transcribe whole files "
        "with `ai2text transcribe` without --stream."
    )


class StreamingRecognizer:
    """One loaded streaming model, shared by any number of sessions (each keeps its own state; the model is only
    read, so sessions may run in separate threads).

    Args:
        model: a model folder trained for streaming, or an already loaded :class:`ModelFolder`.
        options: chunking and endpointing (:class:`StreamingOptions`).
        device: torch device (default: the CPU, where one stream's small steps run best).
    """

    def __init__(
        self, model: str | Path | ModelFolder, options: StreamingOptions | None = None, device: str | None = None
    ):
        self.folder = model if isinstance(model, ModelFolder) else load_model_folder(model, device or "cpu")
        self.options = options or StreamingOptions()
        self.model, self.feature_extractor, self.tokenizer = (
            self.folder.model,
            self.folder.feature_extractor,
            self.folder.tokenizer,
        )
        path = self.folder.path
        config = self.model.config
        if not isinstance(config, AI2TextConfig):
            raise _refuse(path, f"it is a {self.folder.kind} {self.folder.architecture} model, not an AI2TextForCTC")
        if not config.streamable:
            raise _refuse(path, "it was trained without chunks or its convolutions read future frames")
        if getattr(self.feature_extractor, "pitch", False) or self.feature_extractor.normalize == "utterance":
            raise _refuse(path, "its features (pitch, or per-utterance normalisation) need the whole utterance")
        self.sample_rate: int = self.feature_extractor.sampling_rate
        frame_ms = 1000 * self.folder.samples_per_frame / self.sample_rate
        if self.options.chunk_ms < frame_ms or self.options.chunk_ms % frame_ms:
            raise ValueError(f"chunk_ms must be a positive multiple of {frame_ms:g} ms, got {self.options.chunk_ms}")
        self.chunk_frames = int(self.options.chunk_ms // frame_ms)
        left = config.attention_left_chunks if self.options.left_chunks is None else self.options.left_chunks
        if left < 0:
            raise ValueError(
                "left_chunks must be >= 0 for streaming: with all left chunks (-1) every step's cost grows with the "
                "stream. Give StreamingOptions.left_chunks (e.g. 8)."
            )
        self.left_chunks = left
        self.seconds_per_frame = self.folder.seconds_per_frame
        self.onnx_step = self._onnx_step(path, left * self.chunk_frames)

    def _onnx_step(self, path: Path, cache_frames: int) -> OnnxStreamingStep | None:
        """The ONNX step to run: ``options.onnx_step``, else the folder's own (``ai2text export`` writes one) when it
        was exported for these chunks; None for PyTorch steps. An export has no PyTorch weights to fall back on."""
        if self.options.onnx_step:
            step = OnnxStreamingStep(self.options.onnx_step)
            step.check(self.chunk_frames, cache_frames)
            return step
        if not (path / STEP_NAME).is_file():
            if not isinstance(self.model, AI2TextForCTC):
                raise _refuse(path, f"this ONNX export has no {STEP_NAME}: export its PyTorch folder again")
            return None
        step = OnnxStreamingStep(path / STEP_NAME)
        try:
            step.check(self.chunk_frames, cache_frames)
        except ValueError as error:
            if isinstance(self.model, AI2TextForCTC):
                return None  # the folder's step is for other chunks: these run on PyTorch
            raise ValueError(f"{error} (ai2text export --stream-chunk-ms)") from None
        return step

    def session(self) -> StreamingSession:
        """A new stream, starting at time 0."""
        vad = None
        if self.options.vad:
            threads = torch.get_num_threads()
            from silero_vad import load_silero_vad

            torch.set_num_threads(threads)  # importing silero-vad sets one thread for the whole process
            vad = load_silero_vad()  # stateful (an RNN over the windows): one per stream
        return StreamingSession(self, vad)


class _Features:
    """The feature extractor's frames, computed as the audio arrives: each frame once its 25 ms window is complete,
    normalised on the past frames only (``normalize="causal"``); the same numbers as on the whole input."""

    def __init__(self, extractor):
        self.extractor = extractor
        # The offline STFT is centred with n_fft / 2 zeros in front: the stream starts with them too.
        self.samples = np.zeros(extractor.n_fft // 2, dtype=np.float32)
        self.history = torch.zeros(1, 0, extractor.feature_size)
        self.frames = 0  # frames produced so far

    def push(self, samples: np.ndarray, final: bool = False) -> torch.Tensor:
        """Frames (1, frames, mels) completed by ``samples``; ``final``: the stream ends here (zeros after it)."""
        fe = self.extractor
        self.samples = np.concatenate([self.samples, samples.astype(np.float32, copy=False)])
        if final:
            self.samples = np.concatenate([self.samples, np.zeros(fe.n_fft // 2, dtype=np.float32)])
        if len(self.samples) < fe.n_fft:
            return torch.zeros(1, 0, fe.feature_size)
        count = (len(self.samples) - fe.n_fft) // fe.hop_length + 1
        used = self.samples[: (count - 1) * fe.hop_length + fe.n_fft]
        spec = torch.stft(
            torch.from_numpy(used)[None],
            n_fft=fe.n_fft,
            hop_length=fe.hop_length,
            win_length=fe.win_length,
            window=fe._window,
            center=False,
            return_complex=True,
        )
        self.samples = self.samples[count * fe.hop_length :]
        self.frames += count
        frames = fe.log_mel(spec)
        if fe.normalize != "causal":
            return frames
        normalised = fe.causal_normalize(frames, self.history)
        history = torch.cat([self.history, frames], dim=1)
        self.history = history[:, max(0, history.shape[1] - fe.causal_norm_frames + 1) :]
        return normalised


class StreamingSession:
    """One audio stream: feed it with :meth:`accept_audio`, end it with :meth:`finish`."""

    def __init__(self, recognizer: StreamingRecognizer, vad=None):
        self.recognizer = recognizer
        self.options = recognizer.options
        model = recognizer.model
        self._features = _Features(recognizer.feature_extractor)
        self._unread: list[np.ndarray] = []  # audio received but not yet turned into features
        self._finished = False
        self._pending = torch.zeros(1, 0, model.config.n_mels)
        # One of the two states: the ONNX step's (fixed-size caches with a mask) or the PyTorch steps'.
        self._onnx_state = recognizer.onnx_step.initial if recognizer.onnx_step else None
        self._state = model.streaming_state() if self._onnx_state is None else ()
        self._step_frames = model.config.subsampling_factor * recognizer.chunk_frames
        self._cache_frames = recognizer.left_chunks * recognizer.chunk_frames
        self._frames = 0  # logit frames produced so far
        self._samples = 0  # audio samples received so far
        self._utterance = 0
        self._utterance_start = 0  # first logit frame of the current utterance
        self._log_probs: list[torch.Tensor] = []  # the current utterance's (frames, vocab) pieces
        self._paths: list[torch.Tensor] = []  # and their greedy tokens
        self._words_done: list[tuple[int, DecodedUtterance]] = []  # (first frame, words) read up to _frames_done
        self._frames_done = 0  # frames of the utterance read into _words_done (ends on a word delimiter)
        self._last_tokens: list[int] = []  # the letters of the last partial
        tokenizer = recognizer.tokenizer
        self._blank = tokenizer.pad_token_id
        self._delimiter = tokenizer.convert_tokens_to_ids(tokenizer.word_delimiter_token)
        self._vad = vad
        self._vad_buffer = np.zeros(0, dtype=np.float32)
        self._vad_samples = 0  # samples the VAD has read
        self._last_speech = -1  # the end of the last window where the VAD heard speech, samples

    @property
    def seconds(self) -> float:
        """Audio received so far, seconds."""
        return self._samples / self.recognizer.sample_rate

    def accept_audio(self, samples: np.ndarray) -> list[StreamEvent]:
        """Feed float32 mono samples at ``sample_rate`` (any number); the events their steps produced."""
        if self._finished:
            raise RuntimeError("This stream has finished: start another with StreamingRecognizer.session().")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._samples += len(samples)
        self._listen(samples)
        self._unread.append(samples)
        # Features are computed once the next step's last frame is complete (its window ends n_fft / 2 samples past
        # its centre), not per block: each computation reads the normalisation window's past frames again.
        extractor = self.recognizer.feature_extractor
        needed = self._features.frames - self._pending.shape[1] + self._step_frames
        if self._samples < (needed - 1) * extractor.hop_length + extractor.n_fft // 2:
            return []
        audio, self._unread = np.concatenate(self._unread), []
        return self._run(self._features.push(audio), final=False)

    def finish(self) -> list[StreamEvent]:
        """End the stream: run the audio left, and return the last events (a final when anything was said)."""
        if self._finished:
            return []
        self._finished = True
        audio, self._unread = np.concatenate([np.zeros(0, dtype=np.float32), *self._unread]), []
        events = self._run(self._features.push(audio, final=True), final=True)
        return events + self._finalise()

    @torch.inference_mode()
    def _run(self, frames: torch.Tensor, final: bool) -> list[StreamEvent]:
        self._pending = torch.cat([self._pending, frames], dim=1)
        events: list[StreamEvent] = []
        while self._pending.shape[1] >= self._step_frames or (final and self._pending.shape[1]):
            step, self._pending = self._pending[:, : self._step_frames], self._pending[:, self._step_frames :]
            if self._onnx_state is not None:
                logits, self._onnx_state = self.recognizer.onnx_step.run(step.numpy(), self._onnx_state)
                logits = torch.from_numpy(logits)
            else:
                step = step.to(self._state[0].device)
                logits, *self._state = self.recognizer.model.forward_chunk(step, *self._state, self._cache_frames)
            self._log_probs.append(logits[0].float().log_softmax(-1).cpu())
            self._paths.append(self._log_probs[-1].argmax(-1))
            self._frames += logits.shape[1]
            events += self._after_step()
        return events

    @torch.inference_mode()
    def _listen(self, samples: np.ndarray) -> None:
        """Run the VAD over the new audio, remembering where speech was last heard."""
        if self._vad is None:
            return
        self._vad_buffer = np.concatenate([self._vad_buffer, samples])
        windows = len(self._vad_buffer) // VAD_WINDOW
        for index in range(windows):
            window = torch.from_numpy(self._vad_buffer[index * VAD_WINDOW : (index + 1) * VAD_WINDOW])
            self._vad_samples += VAD_WINDOW
            if float(self._vad(window, self.recognizer.sample_rate)) >= 0.5:
                self._last_speech = self._vad_samples
        self._vad_buffer = self._vad_buffer[windows * VAD_WINDOW :]

    def _event(self, kind: str) -> StreamEvent:
        """The current utterance read off the greedy path each step already took. A step never changes frames it
        already gave, so the words before the path's last word delimiter are read once (times from the start of
        the stream) and kept: a partial costs what the new frames hold, not what the utterance does."""
        log_probs, path = torch.cat(self._log_probs), torch.cat(self._paths)
        done = self._frames_done
        delimiters = torch.nonzero(path[done:] == self._delimiter)
        if len(delimiters) and int(delimiters[-1, 0]) > 0:
            cut = done + int(delimiters[-1, 0])
            self._words_done.append(self._read(path[done:cut], log_probs[done:cut], done))
            self._frames_done = done = cut
        parts = [*self._words_done, self._read(path[done:], log_probs[done:], done)]
        spf = self.recognizer.seconds_per_frame
        return StreamEvent(
            kind,  # type: ignore[arg-type]
            " ".join(part.text for part in parts if part.text),
            self._utterance,
            round(self._utterance_start * spf, 3),
            round(self._frames * spf, 3),
            [word for part in parts for word in part.words],
        )

    def _read(self, path: torch.Tensor, log_probs: torch.Tensor, first_frame: int) -> DecodedUtterance:
        """Frames ``first_frame`` onwards of the current utterance, word times from the start of the stream."""
        spf = self.recognizer.seconds_per_frame
        decoded = utterance_from_path(path, log_probs, self.recognizer.tokenizer, spf)
        return join_utterances([decoded], [(self._utterance_start + first_frame) * spf], [1.0])

    def _after_step(self) -> list[StreamEvent]:
        # The greedy path's letters decide everything here; text, word times and confidences are read off it
        # (utterance_from_path) only when they changed, which most steps they do not.
        path = torch.cat(self._paths)
        tokens = torch.unique_consecutive(path)
        tokens = tokens[tokens != self._blank]
        spf = self.recognizer.seconds_per_frame
        heard = self._last_speech / self.recognizer.sample_rate
        if not bool((tokens != self._delimiter).any()) or (
            self._vad is not None and heard <= self._utterance_start * spf
        ):
            # Nothing said yet (no letter, or no speech by the VAD): drop the frames, so a long silence costs nothing
            # to decode again and noise is never a result.
            self._restart()
            return []
        if self._vad is not None:
            silence = self._frames * spf - heard
        else:
            silence = (len(path) - 1 - int(torch.nonzero(path != self._blank)[-1])) * spf
        if silence * 1000 >= self.options.endpoint_silence_ms or len(path) * spf >= self.options.max_utterance_s:
            return self._finalise()
        letters = tokens.tolist()
        if letters == self._last_tokens:
            return []
        self._last_tokens = letters
        return [self._event("partial")]

    def _finalise(self) -> list[StreamEvent]:
        events = []
        if self._log_probs:
            final = self._event("final")
            if final.text:
                events.append(final)
                self._utterance += 1
        self._restart()
        return events

    def _restart(self) -> None:
        """The next utterance starts at the current frame."""
        self._utterance_start, self._log_probs, self._paths, self._last_tokens = self._frames, [], [], []
        self._words_done, self._frames_done = [], 0
