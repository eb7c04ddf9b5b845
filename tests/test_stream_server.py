"""Live transcription over the WebSocket ``/stream`` on a real uvicorn server (loopback, free port).

Tiny randomly initialised models stand in for trained ones (the protocol, limits and guards do not depend on the
weights): one built for streaming (causal front end and convolutions, dynamic chunks, causal normalisation) and
one that is not. Clients are the ``websockets`` library's; audio is 16 kHz 16-bit PCM.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import require_real_vi

from ai2text_hf import AI2TextConfig, AI2TextFeatureExtractor, AI2TextForCTC, AI2TextProcessor, AI2TextTokenizer
from ai2text_hf.data.audio import load_audio
from ai2text_hf.serving import AccessSettings, BackgroundServer, ServeSettings, StreamLimits, create_app
from ai2text_hf.serving.registry import ModelLoadError
from ai2text_hf.serving.streams import SUBPROTOCOL, AudioBuffer
from ai2text_hf.streaming import StreamingOptions, StreamingRecognizer

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

KEY = "stream-key/8f3a+="  # base64 characters: a subprotocol carries it base64url-encoded
LIMITS = StreamLimits(
    max_streams=2, stream_idle_seconds=1.0, max_stream_seconds=30.0, max_frame_ms=200.0, stream_buffer_seconds=1.0
)
FRAME = 3200  # bytes: 100 ms
END = json.dumps({"type": "end"})


def tiny_model(folder: Path, streaming: bool) -> Path:
    """A random AI2TextForCTC folder; ``streaming``: with the config and features a stream needs."""
    torch.manual_seed(0)
    keys = dict(causal_conv=True, causal_subsampling=True, dynamic_chunk_training=True) if streaming else {}
    config = AI2TextConfig(d_model=32, num_encoder_layers=1, num_heads=2, d_ff=64, subsampling_channels=8, **keys)
    AI2TextForCTC(config).save_pretrained(folder)
    features = AI2TextFeatureExtractor(normalize="causal" if streaming else "utterance")
    AI2TextProcessor(feature_extractor=features, tokenizer=AI2TextTokenizer()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    tiny_model(root / "live" / "model", streaming=True)
    tiny_model(root / "offline" / "model", streaming=False)
    return root


@pytest.fixture(scope="module")
def server(models_dir: Path) -> Iterator[BackgroundServer]:
    settings = ServeSettings(models_dir=models_dir, streams=LIMITS, access=AccessSettings(model_management=True))
    with BackgroundServer(create_app(models_dir / "live" / "model", settings)) as running:
        assert httpx.post(f"{running.url}/models/load", json={"name": "offline"}).status_code == 200
        yield running


def _ws(server: BackgroundServer, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + "/stream" + query


def _pcm(seconds: float, seed: int = 0) -> bytes:
    """Noise loud enough for the random model to write something, as 16-bit little-endian PCM."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(16000 * seconds)) * 3000).astype("<i2").tobytes()


def pcm_frames(pcm: bytes, size: int = FRAME) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


@dataclass
class Outcome:
    messages: list[dict]
    code: int | None
    seconds: float  # from the handshake to the close

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]

    @property
    def error(self) -> dict:
        assert self.messages and self.messages[-1]["type"] == "error", self.messages
        return self.messages[-1]


async def _talk(url: str, sends: list[bytes | str], pace: float = 0.0, **options) -> Outcome:
    """Send ``sends`` (every ``pace`` seconds) while reading the server's messages until it closes."""
    options.setdefault("subprotocols", [SUBPROTOCOL])
    start = time.monotonic()
    async with connect(url, open_timeout=30, **options) as websocket:

        async def read() -> list[dict]:
            messages = []
            try:
                async for message in websocket:
                    messages.append(json.loads(message))
            except ConnectionClosed:
                pass
            return messages

        reader = asyncio.create_task(read())
        try:
            for message in sends:
                await websocket.send(message)
                if pace:
                    await asyncio.sleep(pace)
        except ConnectionClosed:
            pass  # the server closed first: its reason is in the messages
        messages = await asyncio.wait_for(reader, 120)
    return Outcome(messages, websocket.close_code, time.monotonic() - start)


def talk(url: str, sends: list[bytes | str], pace: float = 0.0, **options) -> Outcome:
    return asyncio.run(_talk(url, sends, pace, **options))


def _refusal(url: str, **options) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        talk(url, [END], **options)
    return refused.value


def _events(outcome: Outcome) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "audio_seconds"} for m in outcome.messages if m["type"] != "ready"]


def test_a_stream_gets_what_a_local_streaming_session_gives(server: BackgroundServer, models_dir: Path) -> None:
    pcm = _pcm(6.0)
    outcome = talk(_ws(server), [*pcm_frames(pcm), END])
    assert outcome.code == 1000
    ready = outcome.messages[0]
    assert ready == {
        "type": "ready",
        "model": "live",
        "sample_rate": 16000,
        "encoding": "pcm_s16le",
        "chunk_ms": 640,
        "max_frame_bytes": LIMITS.max_frame_bytes,
        "idle_seconds": LIMITS.stream_idle_seconds,
    }
    session = StreamingRecognizer(models_dir / "live" / "model").session()
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    expected = [e.to_dict() for e in session.accept_audio(audio) + session.finish()]
    assert outcome.of_type("final") and outcome.of_type("partial")
    assert _events(outcome) == expected
    assert outcome.messages[-1]["audio_seconds"] == 6.0


def test_the_servers_streaming_options_cut_the_stream(models_dir: Path) -> None:
    options = StreamingOptions(chunk_ms=320, endpoint_silence_ms=400)
    settings = ServeSettings(streams=LIMITS, streaming=options)
    with BackgroundServer(create_app(models_dir / "live" / "model", settings)) as running:
        outcome = talk(_ws(running), [*pcm_frames(_pcm(3.0)), END])
    assert outcome.code == 1000 and outcome.messages[0]["chunk_ms"] == 320
    session = StreamingRecognizer(models_dir / "live" / "model", options).session()
    audio = np.frombuffer(_pcm(3.0), dtype="<i2").astype(np.float32) / 32768
    assert _events(outcome) == [e.to_dict() for e in session.accept_audio(audio) + session.finish()]


def test_a_chunk_the_model_cannot_step_by_stops_the_server_at_start_up(models_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="chunk_ms must be a positive multiple of 40 ms"):
        create_app(models_dir / "live" / "model", ServeSettings(streaming=StreamingOptions(chunk_ms=100)))


def test_a_real_recording_streamed_at_real_time_gets_partials_then_its_finals(
    server: BackgroundServer, models_dir: Path
) -> None:
    corpus = require_real_vi()
    wave = load_audio(sorted((corpus / "audio").rglob("*.wav"))[0])[0][: 16000 * 4]
    pcm = (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()
    outcome = talk(_ws(server, "?model=live&sample_rate=16000"), [*pcm_frames(pcm), END], pace=0.1)
    assert outcome.code == 1000
    session = StreamingRecognizer(models_dir / "live" / "model").session()
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    expected = [e.to_dict() for e in session.accept_audio(audio) + session.finish()]
    assert _events(outcome) == expected
    # At real time the partials come while the audio is still being sent, not all at the end.
    partial_seconds = [m["audio_seconds"] for m in outcome.of_type("partial")]
    assert partial_seconds and min(partial_seconds) < len(wave) / 16000 / 2


def test_a_client_faster_than_real_time_is_served_whole_in_steps_no_larger_than_the_buffer(
    server: BackgroundServer,
) -> None:
    outcome = talk(_ws(server), [*pcm_frames(_pcm(20.0, seed=1)), END])
    assert outcome.code == 1000
    assert outcome.messages[-1]["audio_seconds"] == 20.0  # nothing dropped
    # The recogniser takes at most the buffer (1 s) at a time, however fast the audio comes; a step (640 ms) that
    # left the text as it was sends nothing, so messages are at most a buffer and a step apart (unbounded: 20 s).
    seconds = sorted({m["audio_seconds"] for m in outcome.messages[1:]})
    assert max(b - a for a, b in zip([0.0, *seconds], seconds)) <= LIMITS.stream_buffer_seconds + 0.64 + 1e-6


def test_the_audio_buffer_makes_the_receiver_wait_while_full() -> None:
    async def scenario() -> list[str]:
        buffer, log = AudioBuffer(capacity=8), []

        async def receiver() -> None:
            for chunk in (b"a" * 6, b"b" * 4, b"c" * 2):
                await buffer.put(chunk)
                log.append(f"put {chunk[:1].decode()}")
            buffer.close()

        task = asyncio.create_task(receiver())
        await asyncio.sleep(0.05)
        log.append("take " + (await buffer.take()).decode())
        await asyncio.sleep(0.05)
        log.append("take " + (await buffer.take()).decode())
        log.append(f"take {await buffer.take()}")
        await task
        return log

    assert asyncio.run(scenario()) == ["put a", "take aaaaaa", "put b", "put c", "take bbbbcc", "take None"]


@pytest.mark.parametrize(
    "send, code, error",
    [
        (b"\x01\x02\x03", 1007, "invalid_audio"),
        (b"", 1007, "invalid_audio"),
        (bytes(LIMITS.max_frame_bytes + 2), 1009, "frame_too_large"),
        ("hello", 1003, "unsupported_message"),
        (json.dumps({"type": "start"}), 1003, "unsupported_message"),
    ],
    ids=["odd-bytes", "empty-frame", "frame-over-limit", "text", "unknown-control"],
)
def test_a_bad_frame_gets_a_json_error_and_its_close_code(
    server: BackgroundServer, send: bytes | str, code: int, error: str
) -> None:
    outcome = talk(_ws(server), [*pcm_frames(_pcm(0.3)), send, *pcm_frames(_pcm(1.0))])
    assert outcome.code == code
    assert outcome.error["code"] == error and outcome.error["message"]
    with httpx.Client(base_url=server.url) as http:  # the server is fine after it
        assert http.get("/health").status_code == 200


@pytest.mark.parametrize(
    "query, code, error, words",
    [
        ("?sample_rate=44100", 1007, "wrong_sample_rate", "hears 16000 Hz"),
        ("?sample_rate=fast", 1007, "wrong_sample_rate", "sample_rate=fast"),
        ("?rate=16000", 1008, "bad_parameter", "Unknown query parameter(s) rate"),
        ("?model=nope", 1008, "unknown_model", "'nope' is not loaded"),
    ],
)
def test_bad_stream_parameters_are_refused_naming_them(
    server: BackgroundServer, query: str, code: int, error: str, words: str
) -> None:
    outcome = talk(_ws(server, query), [*pcm_frames(_pcm(0.2))])
    assert outcome.code == code
    assert outcome.error["code"] == error and words in outcome.error["message"]


def test_a_model_not_trained_for_streaming_says_so(server: BackgroundServer) -> None:
    outcome = talk(_ws(server, "?model=offline"), [*pcm_frames(_pcm(0.2))])
    assert outcome.code == 1008
    assert outcome.error["code"] == "streaming_not_supported"
    assert "recipes/streaming-cpu.yaml" in outcome.error["message"]


def test_a_quiet_client_gets_its_last_final_then_is_closed_after_the_idle_timeout(server: BackgroundServer) -> None:
    outcome = talk(_ws(server), [*pcm_frames(_pcm(1.5, seed=2))])  # and then nothing, without "end"
    assert outcome.code == 1008
    assert outcome.error["code"] == "idle"
    assert outcome.messages[-2]["type"] == "final"
    assert LIMITS.stream_idle_seconds <= outcome.seconds < LIMITS.stream_idle_seconds + 10


def test_a_stream_over_its_length_gets_its_last_final_then_is_closed(models_dir: Path) -> None:
    limits = StreamLimits(max_stream_seconds=2.0)
    with BackgroundServer(create_app(models_dir / "live" / "model", ServeSettings(streams=limits))) as running:
        outcome = talk(_ws(running), [*pcm_frames(_pcm(3.0)), END])
    assert outcome.code == 1008
    assert outcome.error["code"] == "too_long" and "2 s of audio" in outcome.error["message"]
    assert outcome.messages[-2]["type"] == "final" and outcome.messages[-2]["audio_seconds"] == 2.0


def test_streams_beyond_the_limit_are_refused_until_one_closes(server: BackgroundServer) -> None:
    async def scenario() -> tuple[list[dict], Outcome, Outcome]:
        held = [await connect(_ws(server), subprotocols=[SUBPROTOCOL]) for _ in range(LIMITS.max_streams)]
        readies = [json.loads(await websocket.recv()) for websocket in held]
        refused = await _talk(_ws(server), [END])
        await held[0].send(END)
        await held[0].wait_closed()
        served = await _talk(_ws(server), [*pcm_frames(_pcm(0.5)), END])
        for websocket in held[1:]:
            await websocket.close()
        return readies, refused, served

    readies, refused, served = asyncio.run(scenario())
    assert [m["type"] for m in readies] == ["ready"] * LIMITS.max_streams
    assert refused.code == 1013
    assert refused.error["code"] == "busy" and "2 streams are open" in refused.error["message"]
    assert served.code == 1000 and served.messages[0]["type"] == "ready"


def test_a_foreign_page_cannot_open_a_stream_but_the_servers_own_page_can(server: BackgroundServer) -> None:
    refused = _refusal(_ws(server), origin="https://attacker.example")
    assert refused.response.status_code == 403
    assert "https://attacker.example are refused" in json.loads(refused.response.body)["detail"]
    own = talk(_ws(server), [*pcm_frames(_pcm(0.3)), END], origin=server.url)
    assert own.code == 1000


def test_streams_answer_only_for_this_servers_host_names(server: BackgroundServer) -> None:
    # The handshake by hand: WebSocket clients write the Host header themselves.
    upgrade = {
        "Host": "rebind.example",
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(bytes(16)).decode(),
    }
    refused = httpx.get(f"{server.url}/stream", headers=upgrade)
    assert refused.status_code == 400
    assert "does not answer for the host 'rebind.example'" in refused.json()["detail"]


@pytest.fixture(scope="module")
def keyed_server(models_dir: Path) -> Iterator[BackgroundServer]:
    settings = ServeSettings(streams=LIMITS, access=AccessSettings(api_key=KEY))
    with BackgroundServer(create_app(models_dir / "live" / "model", settings)) as running:
        yield running


def _bearer(key: str) -> str:
    return "bearer." + base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "options",
    [
        {"subprotocols": [SUBPROTOCOL, _bearer(KEY)]},
        {"additional_headers": {"Authorization": f"Bearer {KEY}"}},
        {"additional_headers": {"X-API-Key": KEY}},
    ],
    ids=["subprotocol", "authorization-header", "x-api-key-header"],
)
def test_a_stream_with_the_api_key_is_served(keyed_server: BackgroundServer, options: dict) -> None:
    outcome = talk(_ws(keyed_server), [*pcm_frames(_pcm(0.3)), END], **options)
    assert outcome.code == 1000 and outcome.messages[0]["type"] == "ready"


@pytest.mark.parametrize(
    "subprotocols, message",
    [
        ([SUBPROTOCOL], "This server needs an API key"),
        ([SUBPROTOCOL, _bearer("guess")], "The API key sent is not this server's."),
        ([SUBPROTOCOL, "bearer.%%%"], "The API key sent is not this server's."),
    ],
    ids=["none", "wrong", "not-base64url"],
)
def test_a_stream_without_the_api_key_is_refused_at_the_handshake(
    keyed_server: BackgroundServer, subprotocols: list[str], message: str
) -> None:
    refused = _refusal(_ws(keyed_server), subprotocols=subprotocols)
    assert refused.response.status_code == 401
    body = refused.response.body.decode()
    assert message in json.loads(body)["detail"]
    assert KEY not in body and "guess" not in body


def test_the_stream_protocol_is_in_the_api_description(server: BackgroundServer) -> None:
    description = httpx.get(f"{server.url}/openapi.json").json()["info"]["description"]
    assert "WebSocket `/stream`" in description and '{"type": "end"}' in description
    assert all(str(code) in description for code in (1000, 1003, 1007, 1008, 1009, 1011, 1013))
