"""The HTTP API on a real uvicorn server (loopback, free port) with a real model and real WAV files."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import TrainedModel

from ai2text_hf.corpus.formats import word_subtitles
from ai2text_hf.decoding import DecodingOptions
from ai2text_hf.inference import Transcriber
from ai2text_hf.serving import AccessSettings, AudioLimits, BackgroundServer, BatchSettings, ServeSettings, create_app
from ai2text_hf.serving.batching import MicroBatcher, QueueFullError, WorkerClosedError

MAX_UPLOAD_MB = 1.0
MAX_AUDIO_SECONDS = 20.0


@pytest.fixture(scope="module")
def models_dir(trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder like runs/: two runs of the fixture model, a broken one and a folder without a model."""
    root = tmp_path_factory.mktemp("runs")
    for name in ("tiny", "spare"):
        (root / name).mkdir()
        (root / name / "model").symlink_to(trained_model.model_dir, target_is_directory=True)
    (root / "broken" / "model").mkdir(parents=True)
    (root / "broken" / "model" / "config.json").write_text("{", encoding="utf-8")
    (root / "notes").mkdir()
    return root


@pytest.fixture(scope="module")
def client(models_dir: Path) -> Iterator[httpx.Client]:
    settings = ServeSettings(
        models_dir=models_dir,
        audio=AudioLimits(max_upload_mb=MAX_UPLOAD_MB, max_seconds=MAX_AUDIO_SECONDS),
        access=AccessSettings(model_management=True),
        batching=BatchSettings(max_batch=16, max_wait=0.05),
    )
    with BackgroundServer(create_app(models_dir / "tiny" / "model", settings)) as server:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            yield http


@pytest.fixture(scope="module")
def wavs(trained_model: TrainedModel) -> list[Path]:
    return [trained_model.corpus_dir / row["file_path"] for row in trained_model.rows("test")[:8]]


@pytest.fixture(scope="module")
def transcriber(trained_model: TrainedModel) -> Transcriber:
    return Transcriber(trained_model.model_dir, device="cpu")


def _post(client: httpx.Client, wav: Path, **options: str) -> httpx.Response:
    return client.post("/transcribe", files={"audio": (wav.name, wav.read_bytes(), "audio/wav")}, data=options)


def _wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="WAV", subtype="PCM_U8")
    return buffer.getvalue()


def _detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    return detail


def test_transcribe_answers_what_the_transcriber_gives(
    client: httpx.Client, wavs: list[Path], transcriber: Transcriber
) -> None:
    response = client.post("/transcribe", files={"audio": (wavs[0].name, wavs[0].read_bytes(), "audio/wav")})
    assert response.status_code == 200, response.text
    result = response.json()
    expected = transcriber.transcribe_batch([wavs[0]])[0]
    assert result["model"] == "tiny"
    assert result["text"] == expected["text"] and result["text"]
    assert result["words"] == expected["words"]
    assert result["duration"] == expected["duration"]
    assert result["confidence"] == pytest.approx(expected["confidence"], abs=1e-3)
    assert " ".join(w["word"] for w in result["words"]) == result["text"]


def test_beam_width_and_hotwords_decode_like_the_cli(
    client: httpx.Client, wavs: list[Path], trained_model: TrainedModel, tmp_path: Path
) -> None:
    phrase = trained_model.rows("test")[0]["transcript"].split()[:2]
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text(" ".join(phrase) + "\n", encoding="utf-8")
    options = DecodingOptions(beam_width=4, hotwords=str(hotwords))
    expected = Transcriber(trained_model.model_dir, device="cpu", decoding=options).transcribe_batch([wavs[0]])[0]
    response = _post(client, wavs[0], beam_width="4", hotwords=" ".join(phrase))
    assert response.status_code == 200, response.text
    assert response.json()["text"] == expected["text"]


def test_timestamps_none_leaves_words_out(client: httpx.Client, wavs: list[Path]) -> None:
    response = _post(client, wavs[1], timestamps="none")
    assert response.status_code == 200, response.text
    assert response.json()["words"] == [] and response.json()["text"]


@pytest.mark.parametrize("where", ["form", "query"])
@pytest.mark.parametrize("fmt, media_type", [("srt", "application/x-subrip"), ("vtt", "text/vtt")])
def test_format_srt_or_vtt_answers_subtitles_of_the_word_timings_as_a_download(
    client: httpx.Client, wavs: list[Path], fmt: str, media_type: str, where: str
) -> None:
    words = _post(client, wavs[0]).json()["words"]
    if where == "form":
        response = _post(client, wavs[0], format=fmt, timestamps="none")  # subtitles have timings regardless
    else:
        files = {"audio": (wavs[0].name, wavs[0].read_bytes(), "audio/wav")}
        response = client.post(f"/transcribe?format={fmt}", files=files)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="{wavs[0].stem}.{fmt}"'
    assert response.text == word_subtitles(words, fmt)  # the writer of `ai2text transcribe --format`
    first_cue = "1\n00:00:" if fmt == "srt" else "WEBVTT\n\n00:00:"
    assert response.text.startswith(first_cue) and words[0]["word"] in response.text


@pytest.mark.parametrize(
    "query, form, field",
    [
        ("?format=srt", {"format": "vtt"}, "format: the query says 'srt' and the form 'vtt'"),
        ("", {"format": "txt"}, "format"),
    ],
    ids=["conflicting", "unknown"],
)
def test_a_conflicting_or_unknown_format_is_422(
    client: httpx.Client, wavs: list[Path], query: str, form: dict, field: str
) -> None:
    files = {"audio": (wavs[0].name, wavs[0].read_bytes(), "audio/wav")}
    assert field in _detail(client.post(f"/transcribe{query}", files=files, data=form), 422)


def test_health_and_models_list_the_models_folder(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok", "default": "tiny", "loaded": ["tiny"]}
    listing = client.get("/models").json()
    assert listing["default"] == "tiny"
    loaded = {m["name"]: m["loaded"] for m in listing["models"]}
    assert loaded["tiny"] is True and loaded["spare"] is False and loaded["broken"] is False
    assert "notes" not in loaded


def test_models_load_and_unload_by_name(client: httpx.Client, wavs: list[Path]) -> None:
    response = client.post("/models/load", json={"name": "spare"})
    assert response.status_code == 200, response.text
    assert response.json()["loaded"] is True
    response = _post(client, wavs[0], model="spare")
    assert response.status_code == 200 and response.json()["model"] == "spare"
    assert client.delete("/models/spare").json()["loaded"] is False
    assert "POST /models/load" in _detail(_post(client, wavs[0], model="spare"), 404)
    assert "not loaded" in _detail(client.delete("/models/spare"), 404)


@pytest.mark.parametrize("name", ["../tiny/model", "/tmp", "notes", "nope"])
def test_models_load_takes_only_names_in_the_models_folder(client: httpx.Client, name: str) -> None:
    detail = _detail(client.post("/models/load", json={"name": name}), 404)
    assert "Available: broken, spare, tiny" in detail


def test_models_load_of_a_broken_folder_is_422(client: httpx.Client) -> None:
    assert "Cannot load model 'broken'" in _detail(client.post("/models/load", json={"name": "broken"}), 422)


def test_unknown_model_is_404(client: httpx.Client, wavs: list[Path]) -> None:
    assert "'nope' is not loaded" in _detail(_post(client, wavs[0], model="nope"), 404)


@pytest.mark.parametrize(
    "megabytes, refusal",
    [(1.1, "'big.wav' is larger than"), (3.0, "The request (3.0 MiB) is larger than")],
    ids=["file-over-limit", "declared-length-over-limit"],
)
def test_oversize_upload_is_413(client: httpx.Client, megabytes: float, refusal: str) -> None:
    data = os.urandom(int(megabytes * 2**20))
    response = client.post("/transcribe", files={"audio": ("big.wav", data, "audio/wav")})
    assert refusal + " the server's limit of 1.0 MiB" in _detail(response, 413)


def test_oversize_chunked_upload_is_413(client: httpx.Client) -> None:
    boundary = "ai2text-test"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="big.wav"\r\n'
    head += "Content-Type: audio/wav\r\n\r\n"

    def body() -> Iterator[bytes]:  # a generator: sent chunked, without a Content-Length
        yield head.encode()
        for _ in range(24):
            yield bytes(2**16)
        yield f"\r\n--{boundary}--\r\n".encode()

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    response = client.post("/transcribe", content=body(), headers=headers)
    assert "The request is larger than the server's limit of 1.0 MiB" in _detail(response, 413)


def test_too_long_audio_is_413(client: httpx.Client) -> None:
    response = client.post("/transcribe", files={"audio": ("long.wav", _wav_bytes(25.0), "audio/wav")})
    assert "25.0 s long" in _detail(response, 413)


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", "application/json"])
def test_non_audio_content_type_is_415(client: httpx.Client, content_type: str) -> None:
    response = client.post("/transcribe", files={"audio": ("notes.txt", b"xin chao", content_type)})
    assert "'notes.txt'" in _detail(response, 415)


@pytest.mark.parametrize(
    "data",
    [b"", b"RIFF\x00\x00\x00\x00WAVEfmt garbage", os.urandom(4096)],
    ids=["empty", "broken-header", "random-bytes"],
)
def test_corrupt_audio_is_422(client: httpx.Client, data: bytes) -> None:
    response = client.post("/transcribe", files={"audio": ("broken.wav", data, "audio/wav")})
    assert "Cannot decode 'broken.wav'" in _detail(response, 422)


def test_wav_cut_inside_its_header_is_422(client: httpx.Client, wavs: list[Path]) -> None:
    # A WAV cut inside its header cannot be read; never a 500.
    response = client.post("/transcribe", files={"audio": ("cut.wav", wavs[0].read_bytes()[:30], "audio/wav")})
    assert "Cannot decode" in _detail(response, 422)


@pytest.mark.parametrize(
    "options, field",
    [
        ({"beam_width": "0"}, "beam_width"),
        ({"beam_width": "1000"}, "beam_width"),
        ({"beam_width": "wide"}, "beam_width"),
        ({"timestamps": "char"}, "timestamps"),
        ({"hotwords": " , "}, "hotwords"),
    ],
)
def test_invalid_options_are_422_naming_the_field(
    client: httpx.Client, wavs: list[Path], options: dict, field: str
) -> None:
    assert field in _detail(_post(client, wavs[0], **options), 422)


def test_missing_audio_field_is_422(client: httpx.Client) -> None:
    assert "audio" in _detail(client.post("/transcribe", data={"beam_width": "2"}), 422)


def test_concurrent_requests_share_model_runs(client: httpx.Client, wavs: list[Path]) -> None:
    expected = {wav: _post(client, wav).json()["text"] for wav in wavs}
    before = next(m for m in client.get("/models").json()["models"] if m["name"] == "tiny")
    jobs = wavs * 3
    with ThreadPoolExecutor(len(jobs)) as pool:
        responses = list(pool.map(lambda wav: _post(client, wav), jobs))
    assert [r.status_code for r in responses] == [200] * len(jobs)
    assert [r.json()["text"] for r in responses] == [expected[wav] for wav in jobs]
    after = next(m for m in client.get("/models").json()["models"] if m["name"] == "tiny")
    assert after["requests"] - before["requests"] == len(jobs)
    assert after["batches"] - before["batches"] < len(jobs) / 2  # batched, not one model run per request


def test_a_full_queue_refuses_and_closing_answers_what_was_queued(transcriber: Transcriber) -> None:
    batcher = MicroBatcher(transcriber, BatchSettings(max_batch=1, max_wait=0, max_queue=1))
    wave = np.zeros(16000 * 20, dtype=np.float32)  # long enough to keep the worker busy while we submit
    futures, refused = [], 0
    for _ in range(3):
        try:
            futures.append(batcher.submit(wave, transcriber.decoder))
        except QueueFullError:
            refused += 1
    batcher.close()
    assert refused >= 1
    assert all(future.done() and future.exception() is None for future in futures)
    with pytest.raises(WorkerClosedError):
        batcher.submit(wave, transcriber.decoder)


def test_page_and_api_docs_are_served(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="audio-file"' in page.text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/transcribe", "/health", "/models", "/models/load", "/models/{name}"} <= set(paths)


def test_a_model_with_its_lm_decodes_with_it_by_default_and_greedily_with_use_lm_false(
    model_with_lm: Path, wavs: list[Path]
) -> None:
    with_lm = Transcriber(model_with_lm, device="cpu")
    assert with_lm.decoding.lm == str(model_with_lm / "language_model")
    greedy = Transcriber(model_with_lm, device="cpu", decoding=DecodingOptions())
    expected = {
        "true": [r["text"] for r in with_lm.transcribe_batch(wavs)],
        "false": [r["text"] for r in greedy.transcribe_batch(wavs)],
    }
    with BackgroundServer(create_app(model_with_lm, ServeSettings())) as server:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            texts = {"true": [], "false": []}
            for wav in wavs:
                texts["true"].append(_post(http, wav).json()["text"])  # the default
                texts["false"].append(_post(http, wav, use_lm="false").json()["text"])
    assert texts == expected
