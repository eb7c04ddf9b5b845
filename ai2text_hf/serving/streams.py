"""Live transcription over a WebSocket at ``/stream``: 16 kHz 16-bit PCM in, JSON partial and final text out.

Each stream runs one :class:`~ai2text_hf.streaming.StreamingSession` with two coroutines: the receiver reads
frames, checks them and appends their audio to a bounded :class:`AudioBuffer`; the recogniser takes everything
buffered, runs the session on it in a worker thread (shared by all streams) and sends the messages it yields. A
full buffer makes the receiver wait, so uvicorn stops reading that socket and TCP slows the client: a client
sending faster than real time is served as fast as the model goes, never buffered without bound. Every refusal
is one ``{"type": "error", "code", "message"}`` message and a close code (:class:`CloseCode`); the protocol is
documented in docs/using-models.md (Live transcription) and in the API description (:data:`PROTOCOL_DOC`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from enum import IntEnum

import numpy as np
from starlette.datastructures import QueryParams
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..streaming import StreamEvent, StreamingSession
from .guards import KEY_PROTOCOL_PREFIX
from .limits import StreamLimits
from .registry import LoadedModel, ModelRegistry, UnknownModelError

#: The subprotocol of this protocol; a client that offers it (browsers must, to send the key as a subprotocol
#: too) gets it back.
SUBPROTOCOL = "ai2text.v1"
#: The one audio format a stream takes.
ENCODING = "pcm_s16le"
#: Query parameters ``/stream`` takes.
PARAMETERS = ("model", "sample_rate")

logger = logging.getLogger(__name__)


class CloseCode(IntEnum):
    """WebSocket close codes of ``/stream`` (RFC 6455, section 7.4.1)."""

    NORMAL = 1000  # the client sent {"type": "end"}: every final was sent
    UNSUPPORTED_DATA = 1003  # a text message that is not {"type": "end"}
    INVALID_DATA = 1007  # a binary frame that is not 16-bit PCM, or a sample rate other than the model's
    POLICY = 1008  # unknown model or parameter, a model not trained for streaming, idle or too long a stream
    TOO_BIG = 1009  # a frame over the size limit
    INTERNAL_ERROR = 1011  # the model failed (a bug: logged with its traceback)
    TRY_AGAIN_LATER = 1013  # as many streams as the server serves are open


PROTOCOL_DOC = f"""
**Live transcription: WebSocket `/stream`** (not listed below: OpenAPI describes no WebSockets).
Query parameters: `model` (a loaded model's name; default the server's) and `sample_rate` (default and only
value: the model's, 16000). Offer the subprotocol `{SUBPROTOCOL}`; with an API key, offer also
`{KEY_PROTOCOL_PREFIX}<key in base64url without padding>` (or send the usual headers, outside browsers).

Client to server: binary frames of mono 16-bit little-endian PCM at 16 kHz (any length up to the limit, e.g.
100 ms = 3200 bytes), then the text message `{{"type": "end"}}` to flush. Server to client, JSON text:
`{{"type": "ready", "model", "sample_rate", "encoding": "{ENCODING}", "chunk_ms", "max_frame_bytes",
"idle_seconds"}}` once (`chunk_ms`: the audio per recognition step, set by `ai2text serve --chunk-ms`),
then `{{"type": "partial" | "final", "text", "utterance", "start", "end", "words": [{{"word", "start", "end",
"confidence"}}], "audio_seconds"}}` (a partial is replaced by the next message of its utterance; a final is
kept; times in seconds from the start of the stream; `audio_seconds`: the audio received when it was sent),
and `{{"type": "error", "code", "message"}}` before a close. Close codes: 1000 after `end` (every final sent),
1003 a text message other than `end`, 1007 a frame that is not 16-bit PCM or another sample rate, 1008 an
unknown model or parameter, a model not trained for streaming, no audio for the idle timeout or a stream over
its length (the last two after their final), 1009 a frame over the size limit, 1011 a model failure, 1013 too
many streams (retry later). A refused handshake (Host, Origin or API key) is an HTTP 400, 403 or 401.
"""


class StreamClosed(Exception):
    """Ends a stream with an error message and a close code."""

    def __init__(self, code: CloseCode, error: str, message: str):
        super().__init__(message)
        self.code = code
        self.error = error
        self.message = message


class AudioBuffer:
    """Audio bytes received and not yet recognised, at most ``capacity`` of them (asyncio.Queue bounds items, not
    bytes). One receiver puts, one recogniser takes, both on the event loop."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.closed = False
        self._data = bytearray()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()

    async def put(self, chunk: bytes) -> None:
        """Append ``chunk``, first waiting while it would overflow the buffer (an empty buffer takes any chunk)."""
        while self._data and len(self._data) + len(chunk) > self.capacity:
            self._writable.clear()
            await self._writable.wait()
        self._data += chunk
        self._readable.set()

    async def take(self) -> bytes | None:
        """Everything buffered, waiting for some; None once closed and empty."""
        while not self._data and not self.closed:
            self._readable.clear()
            await self._readable.wait()
        chunk = bytes(self._data)
        self._data.clear()
        self._writable.set()
        return chunk or None

    def close(self) -> None:
        self.closed = True
        self._readable.set()


class StreamHub:
    """The ``/stream`` endpoint: counts the open streams and owns the threads that run their recognition."""

    def __init__(self, registry: ModelRegistry, limits: StreamLimits):
        self.registry = registry
        self.limits = limits
        self.active = 0  # open streams; changed on the event loop only
        self._pool = ThreadPoolExecutor(limits.stream_workers, thread_name_prefix="ai2text-stream")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def serve(self, websocket: WebSocket) -> None:
        """One stream, from the handshake to the close."""
        offered = websocket.scope.get("subprotocols", [])
        await websocket.accept(SUBPROTOCOL if SUBPROTOCOL in offered else None)
        try:
            if self.active >= self.limits.max_streams:
                raise StreamClosed(
                    CloseCode.TRY_AGAIN_LATER,
                    "busy",
                    f"The server is busy: {self.active} streams are open, its limit; retry in a moment.",
                )
            self.active += 1
            try:
                await self._stream(websocket)
            finally:
                self.active -= 1
        except StreamClosed as closed:
            await _close(websocket, closed)
        except WebSocketDisconnect:
            pass  # the client left: nobody to tell

    async def _stream(self, websocket: WebSocket) -> None:
        loaded = self._model(websocket.query_params)
        rate = loaded.sampling_rate
        session = await asyncio.get_running_loop().run_in_executor(self._pool, self._session, loaded)
        await websocket.send_json(
            {
                "type": "ready",
                "model": loaded.name,
                "sample_rate": rate,
                "encoding": ENCODING,
                "chunk_ms": loaded.recognizer.options.chunk_ms,
                "max_frame_bytes": self.limits.max_frame_bytes,
                "idle_seconds": self.limits.stream_idle_seconds,
            }
        )
        buffer = AudioBuffer(int(self.limits.stream_buffer_seconds * rate * 2))
        receiving = asyncio.create_task(self._receive(websocket, buffer, rate))
        recognising = asyncio.create_task(self._recognise(websocket, session, buffer, rate))
        await asyncio.wait((receiving, recognising), return_when=asyncio.FIRST_COMPLETED)
        if not receiving.done():  # the recogniser stops first only when it failed
            receiving.cancel()
            await _failure(recognising)
        if receiving.exception() is not None:  # a bad frame or a disconnect: no more messages for this stream
            recognising.cancel()
            raise receiving.exception()
        await _failure(recognising)  # the buffer is closed: this waits for the last final
        ending = receiving.result()
        if ending is not None:
            raise ending
        await websocket.close(CloseCode.NORMAL)

    def _model(self, query: QueryParams) -> LoadedModel:
        """The model the query names, once its parameters are checked."""
        unknown = sorted(set(query) - set(PARAMETERS))
        if unknown:
            raise StreamClosed(
                CloseCode.POLICY,
                "bad_parameter",
                f"Unknown query parameter(s) {', '.join(unknown)}: /stream takes {' and '.join(PARAMETERS)}.",
            )
        try:
            loaded = self.registry.get(query.get("model"))
        except UnknownModelError as error:
            raise StreamClosed(CloseCode.POLICY, "unknown_model", str(error)) from error
        rate = query.get("sample_rate", str(loaded.sampling_rate))
        if rate != str(loaded.sampling_rate):
            raise StreamClosed(
                CloseCode.INVALID_DATA,
                "wrong_sample_rate",
                f"sample_rate={rate}: model {loaded.name!r} hears {loaded.sampling_rate} Hz audio. Resample to it "
                "before sending (the page at / does it in the browser).",
            )
        return loaded

    @staticmethod
    def _session(loaded: LoadedModel) -> StreamingSession:
        if loaded.recognizer is None:
            raise StreamClosed(CloseCode.POLICY, "streaming_not_supported", str(loaded.not_streaming))
        return loaded.recognizer.session()

    async def _receive(self, websocket: WebSocket, buffer: AudioBuffer, rate: int) -> StreamClosed | None:
        """Frames into ``buffer`` until the client's ``end`` (None) or an idle or too long stream (the StreamClosed
        to send once its last final is out); a bad frame raises its StreamClosed."""
        limits = self.limits
        max_bytes = int(limits.max_stream_seconds * rate * 2)
        received = 0
        try:
            while True:
                try:
                    message = await asyncio.wait_for(websocket.receive(), limits.stream_idle_seconds)
                except asyncio.TimeoutError:
                    return StreamClosed(
                        CloseCode.POLICY,
                        "idle",
                        f"No audio for {limits.stream_idle_seconds:g} s (the server's idle timeout): stream closed.",
                    )
                if message["type"] == "websocket.disconnect":
                    raise WebSocketDisconnect(message.get("code", CloseCode.NORMAL))
                data = message.get("bytes")
                if data is None:
                    _check_end(message.get("text"))
                    return None
                _check_frame(data, limits.max_frame_bytes)
                received += len(data)
                if received > max_bytes:
                    return StreamClosed(
                        CloseCode.POLICY,
                        "too_long",
                        f"The stream passed {limits.max_stream_seconds:g} s of audio, the server's limit: closed.",
                    )
                await buffer.put(data)
        finally:
            buffer.close()

    async def _recognise(self, websocket: WebSocket, session: StreamingSession, buffer: AudioBuffer, rate: int) -> None:
        """Run the session on what the buffer holds, sending its messages, until the buffer closes; then flush."""
        loop = asyncio.get_running_loop()
        samples = 0
        while (chunk := await buffer.take()) is not None:
            audio = np.frombuffer(chunk, dtype="<i2").astype(np.float32) / 32768.0
            samples += len(audio)
            events = await loop.run_in_executor(self._pool, session.accept_audio, audio)
            await _send_events(websocket, events, samples / rate)
        events = await loop.run_in_executor(self._pool, session.finish)
        await _send_events(websocket, events, samples / rate)


def _check_frame(data: bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise StreamClosed(
            CloseCode.TOO_BIG,
            "frame_too_large",
            f"A frame of {len(data)} bytes: this server takes frames of at most {max_bytes} bytes "
            f"({max_bytes // 32} ms of 16 kHz 16-bit audio). Send smaller frames, e.g. 100 ms (3200 bytes).",
        )
    if not data or len(data) % 2:
        raise StreamClosed(
            CloseCode.INVALID_DATA,
            "invalid_audio",
            f"A binary frame of {len(data)} bytes is not 16-bit PCM: frames carry mono 16-bit little-endian samples "
            "at 16 kHz, an even, non-zero number of bytes.",
        )


def _check_end(text: str | None) -> None:
    """Let the one text message the protocol has, ``{"type": "end"}``, through."""
    try:
        message = json.loads(text or "")
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("type") != "end":
        raise StreamClosed(
            CloseCode.UNSUPPORTED_DATA,
            "unsupported_message",
            f'Text message {(text or "")[:60]!r}: the only text message is {{"type": "end"}} (flush and close); '
            "audio goes in binary frames of 16-bit little-endian PCM at 16 kHz.",
        )


async def _send_events(websocket: WebSocket, events: list[StreamEvent], audio_seconds: float) -> None:
    for event in events:
        await websocket.send_json({**event.to_dict(), "audio_seconds": round(audio_seconds, 3)})


async def _failure(task: asyncio.Task) -> None:
    """Wait for the recogniser; a failure of the model (not of the client) becomes close 1011."""
    try:
        await task
    except (StreamClosed, WebSocketDisconnect, asyncio.CancelledError):
        raise
    except Exception as error:
        logger.exception("stream recognition failed")
        raise StreamClosed(
            CloseCode.INTERNAL_ERROR, "internal_error", f"Recognition failed: {type(error).__name__}: {error}"
        ) from error


async def _close(websocket: WebSocket, closed: StreamClosed) -> None:
    try:
        await websocket.send_json({"type": "error", "code": closed.error, "message": closed.message})
        await websocket.close(closed.code, reason=closed.error)
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client left first
