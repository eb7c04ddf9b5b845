"""What the server lets in: upload headers checked before decoding, body limits on every endpoint, the API
key, model management, /health, the Host header, CORS, hotword weights and unknown parameters.

A tiny randomly initialised model stands in for a trained one (these behaviours do not depend on the
weights), served by a real uvicorn on loopback.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch

from ai2text_hf import AI2TextConfig, AI2TextFeatureExtractor, AI2TextForCTC, AI2TextProcessor, AI2TextTokenizer
from ai2text_hf.cli import build_parser
from ai2text_hf.cli.models import serve_settings
from ai2text_hf.decoding.hotwords import MAX_HOTWORD_WEIGHT, Hotwords
from ai2text_hf.serving import (
    AccessSettings,
    AudioLimits,
    BackgroundServer,
    BatchSettings,
    ServeSettings,
    StreamLimits,
    create_app,
)
from ai2text_hf.serving.guards import API_KEY_ENV, MAX_JSON_BODY_BYTES

KEY = "test-key-8f3a"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = AudioLimits(max_upload_mb=1.0, max_seconds=20.0, max_channels=2, max_sample_rate=48_000, max_decoded_mb=1.0)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/tiny/model`` (random weights) and a second run, ``runs/spare/model``, pointing at it."""
    root = tmp_path_factory.mktemp("runs")
    folder = root / "tiny" / "model"
    torch.manual_seed(0)
    config = AI2TextConfig(d_model=32, num_encoder_layers=1, num_heads=2, d_ff=64, subsampling_channels=8)
    AI2TextForCTC(config).save_pretrained(folder)
    AI2TextProcessor(feature_extractor=AI2TextFeatureExtractor(), tokenizer=AI2TextTokenizer()).save_pretrained(folder)
    (root / "spare").mkdir()
    (root / "spare" / "model").symlink_to(folder, target_is_directory=True)
    return root


def _serve(models_dir: Path, **options) -> BackgroundServer:
    settings = ServeSettings(models_dir=models_dir, audio=LIMITS, **options)
    return BackgroundServer(create_app(models_dir / "tiny" / "model", settings))


@pytest.fixture(scope="module")
def client(models_dir: Path) -> Iterator[httpx.Client]:
    """A server with an API key, model management off (the default) and small audio limits."""
    with _serve(models_dir, access=AccessSettings(api_key=KEY)) as server:
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as http:
            yield http


def _audio(seconds: float, rate: int = 16000, channels: int = 1, audio_format: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((int(seconds * rate), channels), np.int16), rate, format=audio_format, subtype="PCM_16")
    return buffer.getvalue()


def _without_length(flac: bytes) -> bytes:
    """The FLAC with STREAMINFO's total sample count zeroed, as a stream written to a pipe has it."""
    data = bytearray(flac)
    data[21] &= 0xF0  # the count's 36 bits: the low 4 bits of byte 21 and bytes 22-25
    data[22:26] = bytes(4)
    return bytes(data)


def _upload(client: httpx.Client, data: bytes, name: str = "a.wav", **fields: str) -> httpx.Response:
    return client.post("/transcribe", files={"audio": (name, data, "audio/wav")}, data=fields)


def _detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["detail"]


# Item 7: channels, rate, length and decoded size come from the header, before anything is decoded.


def test_a_small_recording_within_the_limits_is_transcribed(client: httpx.Client) -> None:
    response = _upload(client, _audio(2.0, 44100, 2))
    assert response.status_code == 200, response.text
    assert response.json()["duration"] == 2.0


def test_a_decompression_bomb_is_refused_from_its_header(client: httpx.Client) -> None:
    # The shape of the 386 KB FLAC that took a server to 4 GB (8 channels at 384 kHz), here 1 s long.
    bomb = _audio(1.0, 384_000, 8, "FLAC")
    assert len(bomb) < 50_000
    detail = _detail(_upload(client, bomb, "bomb.flac"), 422)
    assert "'bomb.flac' has 8 channels; this server takes at most 2" in detail


@pytest.mark.parametrize(
    "seconds, rate, channels, status, message",
    [
        (0.5, 16000, 3, 422, "has 3 channels; this server takes at most 2"),
        (0.5, 96000, 1, 422, "is sampled at 96000 Hz; this server takes at most 48000 Hz"),
        (25.0, 8000, 1, 413, "is 25.0 s long; this server transcribes at most 20 s"),
        (10.0, 16000, 2, 413, "decodes to 1.2 MiB (2 channels x 160000 frames); this server decodes at most 1 MiB"),
    ],
    ids=["channels", "sample-rate", "duration", "decoded-size"],
)
def test_header_over_a_limit_is_refused_naming_it(
    client: httpx.Client, seconds: float, rate: int, channels: int, status: int, message: str
) -> None:
    assert message in _detail(_upload(client, _audio(seconds, rate, channels, "FLAC"), "x.flac"), status)


def test_a_file_that_does_not_state_its_length_is_422(client: httpx.Client) -> None:
    # libsndfile reports such a stream as 2^63 - 1 frames, and decoding would allocate that many.
    flac = _without_length(_audio(1.0, audio_format="FLAC"))
    assert "'x.flac' does not state its length in its header" in _detail(_upload(client, flac, "x.flac"), 422)


def test_transcriptions_beyond_max_queue_get_503_while_the_first_is_still_uploading(models_dir: Path) -> None:
    started, release = threading.Event(), threading.Event()
    boundary = "ai2text-test"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="slow.wav"\r\n\r\n'

    def slow_body() -> Iterator[bytes]:  # chunked, and held open until the test has seen the refusal
        started.set()  # the request's headers are out
        yield head.encode()
        release.wait(60)
        yield _audio(0.5) + f"\r\n--{boundary}--\r\n".encode()

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    with _serve(models_dir, batching=BatchSettings(max_queue=1)) as server, ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, f"{server.url}/transcribe", content=slow_body(), headers=headers, timeout=60)
        assert started.wait(30)
        deadline = time.monotonic() + 30
        while (second := httpx.post(f"{server.url}/transcribe", files={"audio": ("e.wav", b"")})).status_code != 503:
            assert second.status_code == 422 and time.monotonic() < deadline  # the empty file, admitted
            time.sleep(0.05)
        assert "The server is busy: 1 transcriptions are in progress, its limit" in second.json()["detail"]
        assert second.headers["retry-after"] == "1"
        release.set()
        assert first.result().status_code == 200, first.result().text


# Item 8: every endpoint bounds its request body, by Content-Length and as the body arrives.


@pytest.mark.parametrize(
    "method, path", [("POST", "/models/load"), ("DELETE", "/models/tiny"), ("GET", "/health"), ("GET", "/models")]
)
def test_a_json_endpoint_refuses_a_body_over_its_limit(client: httpx.Client, method: str, path: str) -> None:
    body = b"{" + b" " * MAX_JSON_BODY_BYTES + b"}"
    response = client.request(method, path, content=body, headers={"content-type": "application/json"})
    assert f"larger than the 64 KiB this server takes on {path}" in _detail(response, 413)


def test_a_chunked_json_body_is_refused_once_it_passes_the_limit(client: httpx.Client) -> None:
    def body() -> Iterator[bytes]:  # a generator: sent chunked, without a Content-Length
        for _ in range(64):
            yield b" " * 4096

    response = client.post("/models/load", content=body(), headers={"content-type": "application/json"})
    assert "The request is larger than the 64 KiB this server takes on /models/load" in _detail(response, 413)


# Item 9: API key, model management, /health, Host header, CORS.


@pytest.mark.parametrize(
    "headers, message",
    [
        ({}, "This server needs an API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."),
        ({"X-API-Key": "guess"}, "The API key sent is not this server's."),
        ({"Authorization": "Bearer guess"}, "The API key sent is not this server's."),
        ({"Authorization": f"Basic {KEY}"}, "This server needs an API key"),
    ],
    ids=["none", "wrong-x-api-key", "wrong-bearer", "other-scheme"],
)
@pytest.mark.parametrize("method, path", [("POST", "/transcribe"), ("GET", "/models"), ("POST", "/models/load")])
def test_requests_without_the_api_key_are_401(
    client: httpx.Client, headers: dict, message: str, method: str, path: str
) -> None:
    response = httpx.request(method, f"{client.base_url}{path}", headers=headers, files={"audio": ("a.wav", b"x")})
    assert message in _detail(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert "guess" not in response.text and KEY not in response.text


@pytest.mark.parametrize("headers", [AUTH, {"X-API-Key": KEY}, {"Authorization": f"bearer  {KEY}"}])
def test_the_api_key_is_accepted_in_either_header(client: httpx.Client, headers: dict) -> None:
    response = httpx.get(f"{client.base_url}/models", headers=headers)
    assert response.status_code == 200, response.text
    assert KEY not in response.text


@pytest.mark.parametrize(
    "path", ["/", "/health", "/docs", "/redoc", "/openapi.json", "/static-offline-docs/swagger-ui.css"]
)
def test_page_docs_and_health_need_no_api_key(client: httpx.Client, path: str) -> None:
    assert httpx.get(f"{client.base_url}{path}").status_code == 200


def test_the_api_key_never_shows_in_the_settings_repr() -> None:
    assert KEY not in repr(ServeSettings(access=AccessSettings(api_key=KEY)))


def test_model_management_is_off_by_default(client: httpx.Client) -> None:
    assert "start it with --allow-model-management" in _detail(client.post("/models/load", json={"name": "spare"}), 403)
    assert "start it with --allow-model-management" in _detail(client.delete("/models/tiny"), 403)
    assert [m["name"] for m in client.get("/models").json()["models"]] == ["tiny"]  # the folder is not offered
    assert client.get("/health").status_code == 200


def test_health_is_503_once_the_default_model_is_unloaded(models_dir: Path) -> None:
    with _serve(models_dir, access=AccessSettings(model_management=True)) as server:
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok", "default": "tiny", "loaded": ["tiny"]}
        assert httpx.delete(f"{server.url}/models/tiny").status_code == 200
        response = httpx.get(f"{server.url}/health")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "default": "tiny", "loaded": []}
        assert httpx.post(f"{server.url}/transcribe", files={"audio": ("a.wav", _audio(0.5))}).status_code == 404


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "192.168.1.20"])
def test_local_names_and_ip_addresses_are_served(client: httpx.Client, host: str) -> None:
    assert client.get("/models", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "localhost.attacker.example", "[::1"])
def test_other_host_names_are_refused_against_dns_rebinding(client: httpx.Client, host: str) -> None:
    detail = _detail(client.get("/models", headers={"Host": host}), 400)
    assert "a guard against DNS rebinding" in detail and "--allowed-host" in detail


def test_allowed_host_names_are_served(models_dir: Path) -> None:
    with _serve(models_dir, access=AccessSettings(allowed_hosts=("asr.example.org",))) as server:
        assert httpx.get(f"{server.url}/health", headers={"Host": "asr.example.org:443"}).status_code == 200
        assert httpx.get(f"{server.url}/health", headers={"Host": "other.example.org"}).status_code == 400


def test_cors_is_off_unless_origins_are_configured(client: httpx.Client, models_dir: Path) -> None:
    origin = {"Origin": "https://app.example.com"}
    assert "access-control-allow-origin" not in client.get("/models", headers=origin).headers
    access = AccessSettings(api_key=KEY, cors_origins=("https://app.example.com",))
    with _serve(models_dir, access=access) as server:
        allowed = httpx.get(f"{server.url}/models", headers={**AUTH, **origin})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        other = httpx.get(f"{server.url}/models", headers={**AUTH, "Origin": "https://attacker.example"})
        assert "access-control-allow-origin" not in other.headers
        # A browser's preflight carries no key; it must pass and allow the key's headers.
        request = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
        preflight = httpx.options(f"{server.url}/transcribe", headers={**origin, **request})
        assert preflight.status_code == 200
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()


def test_serve_cli_defaults_are_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    settings = serve_settings(build_parser().parse_args(["serve", "--model", "m"]))
    assert settings == ServeSettings(access=AccessSettings(allowed_hosts=("127.0.0.1",)))


def test_serve_cli_sets_the_stream_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    argv = ["serve", "--model", "m", "--max-streams", "3", "--stream-idle-seconds", "2.5", "--max-frame-ms", "200"]
    streams = serve_settings(build_parser().parse_args(argv)).streams
    assert streams == StreamLimits(max_streams=3, stream_idle_seconds=2.5, max_frame_ms=200.0)
    assert streams.max_frame_bytes == 6400


def test_serve_cli_reads_the_api_key_from_a_file_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def key(*argv: str) -> str | None:
        return serve_settings(build_parser().parse_args(["serve", "--model", "m", *argv])).access.api_key

    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert key() == "from-env"
    (tmp_path / "key").write_text("from-file\n", encoding="utf-8")
    assert key("--api-key-file", str(tmp_path / "key")) == "from-file"
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="is empty: write the key on its first line"):
        key("--api-key-file", str(tmp_path / "empty"))
    with pytest.raises(SystemExit, match="Cannot read the API key file"):
        key("--api-key-file", str(tmp_path / "missing"))


# Item 10: hotword weights and parameters the endpoint does not take.


@pytest.mark.parametrize("weight", ["inf", "1e308", "nan", "-1", "11"])
def test_an_out_of_range_hotword_weight_is_422_naming_the_hotword(client: httpx.Client, weight: str) -> None:
    detail = _detail(_upload(client, _audio(1.0), hotwords=f"xin chào\t{weight}"), 422)
    assert f"hotwords: Hotword 'xin chào' has weight {float(weight):g}: a weight is a number from 0 to 10" in detail


def test_a_hotword_weight_that_is_not_a_number_is_422(client: httpx.Client) -> None:
    detail = _detail(_upload(client, _audio(1.0), hotwords="xin chào\tstrong"), 422)
    assert "Hotword 'xin chào' has weight 'strong', which is not a number" in detail


def test_the_largest_hotword_weight_decodes(client: httpx.Client) -> None:
    hotwords = f"xin chào\t{MAX_HOTWORD_WEIGHT:g}\nhà nội\t0"
    assert _upload(client, _audio(2.0), hotwords=hotwords, beam_width="8").status_code == 200


@pytest.mark.parametrize("weight", [math.inf, -math.inf, math.nan, 1e308, -0.5])
def test_hotwords_refuse_weights_outside_the_range(weight: float) -> None:
    with pytest.raises(ValueError, match="Hotword 'hà nội' has weight"):
        Hotwords([("hà nội", weight)])


def test_an_unknown_query_parameter_is_422_naming_it(client: httpx.Client) -> None:
    response = client.post("/transcribe?beam_width=-1", files={"audio": ("a.wav", _audio(1.0), "audio/wav")})
    detail = _detail(response, 422)
    assert "Unknown query parameter(s) beam_width: POST /transcribe takes format" in detail
    assert "multipart form fields (audio, model, beam_width, use_lm, timestamps, hotwords, format)" in detail
    detail = _detail(client.get("/health?verbose=1"), 422)
    assert "Unknown query parameter(s) verbose: GET /health takes none." in detail


def test_an_unknown_form_field_is_422_naming_it(client: httpx.Client) -> None:
    detail = _detail(_upload(client, _audio(1.0), beam_widht="4"), 422)
    assert "Unknown form field(s) beam_widht: POST /transcribe takes audio, model, beam_width" in detail


def test_the_page_states_the_limits(client: httpx.Client) -> None:
    page = httpx.get(f"{client.base_url}/").text
    assert "This server takes files up to 1 MiB and 20 s, with at most 2 channels, 48000 Hz" in page
    assert 'id="api-key"' in page
