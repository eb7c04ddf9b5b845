"""The HTTP API (FastAPI): transcribe uploads, manage loaded models, and a page to try it at ``/``.

Every error answers ``{"detail": "<message>"}`` with a 4xx code (503 when the queue is full); bad input is
checked before it reaches a model (:mod:`.uploads`). Interactive API docs are at ``/docs`` (and ``/redoc``).
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoint annotations at runtime, and they
# refer to this factory's settings.
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from .batching import BatchSettings, QueueFullError, WorkerClosedError
from .registry import ModelLoadError, ModelRegistry, UnknownModelError
from .uploads import UploadSizeLimit, check_content_type, decode_upload, read_upload


@dataclass(frozen=True)
class ServeSettings:
    """Server limits and where models come from.

    Args:
        models_dir: ``<models_dir>/<name>/model`` folders can be loaded by name (``POST /models/load``).
        max_upload_mb: largest accepted audio file.
        max_audio_seconds: longest accepted recording.
        max_beam_width: largest beam a request may ask for (beam search time grows with it).
        max_hotwords_chars: longest hotwords text a request may send.
        batching: how concurrent requests are grouped into model runs.
        device: torch device of the models (CUDA when available by default).
    """

    models_dir: Path = Path("runs")
    max_upload_mb: float = 20.0
    max_audio_seconds: float = 120.0
    max_beam_width: int = 64
    max_hotwords_chars: int = 10_000
    batching: BatchSettings = field(default_factory=BatchSettings)
    device: str | None = None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


class Word(BaseModel):
    word: str
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")
    confidence: float = Field(ge=0, le=1)


class Transcription(BaseModel):
    text: str
    confidence: float = Field(ge=0, le=1, description="mean posterior of the emitted tokens")
    duration: float = Field(description="seconds of audio received")
    words: list[Word] = Field(description="word timings (empty with timestamps=none)")
    model: str


class ModelInfo(BaseModel):
    name: str
    path: str
    loaded: bool
    requests: int | None = Field(None, description="requests answered since loading")
    batches: int | None = Field(None, description="model runs those took (fewer than requests under load)")


class ModelList(BaseModel):
    default: str | None = Field(description="the model used when a request names none")
    models: list[ModelInfo]


class LoadRequest(BaseModel):
    name: str = Field(description="a run name in the models folder: <models-dir>/<name>/model")


class Health(BaseModel):
    status: Literal["ok"]
    loaded: list[str]


class ErrorMessage(BaseModel):
    detail: str


ERRORS = {code: {"model": ErrorMessage} for code in (404, 413, 415, 422, 503)}


def _page() -> str:
    return resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(model: str | Path | None = None, settings: ServeSettings | None = None) -> FastAPI:
    """The API serving ``model`` (a model folder, loaded now and used by default) and the models folder.

    Loading happens here, before any request, so a bad ``model`` fails at start-up with its message.
    """
    settings = settings or ServeSettings()
    registry = ModelRegistry(settings.models_dir, settings.batching, settings.device)
    if model is not None:
        registry.add(model)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(registry.close)

    # /docs and /redoc with their scripts served by us: FastAPI's default pages load them from a CDN,
    # which leaves the docs blank on an offline machine.
    app = FastAPIOffline(
        title="ai2text",
        summary="Vietnamese speech-to-text (CTC) with word timings and confidences.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI answers a list of error objects; our contract is one readable message.
        problems = [f"{'.'.join(str(p) for p in e['loc'][1:]) or e['loc'][0]}: {e['msg']}" for e in error.errors()]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(UnknownModelError)
    async def _unknown_model(_: Request, error: UnknownModelError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(ModelLoadError)
    async def _unloadable(_: Request, error: ModelLoadError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(WorkerClosedError)
    async def _unloaded(_: Request, error: WorkerClosedError) -> JSONResponse:
        return JSONResponse({"detail": f"The model was unloaded while the request waited: {error}."}, status_code=404)

    @app.exception_handler(QueueFullError)
    async def _busy(_: Request, error: QueueFullError) -> JSONResponse:
        detail = f"The server is busy ({error}); retry in a moment."
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})

    app.add_middleware(UploadSizeLimit, path="/transcribe", max_bytes=settings.max_upload_bytes)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return _page()

    @app.get("/health", response_model=Health)
    async def health() -> dict:
        return {"status": "ok", "loaded": [m["name"] for m in registry.listing() if m["loaded"]]}

    @app.get("/models", response_model=ModelList)
    async def models() -> dict:
        """Loaded models (with request and batch counts), then those the models folder offers."""
        return {"default": registry.default, "models": registry.listing()}

    @app.post("/models/load", response_model=ModelInfo, responses=ERRORS)
    async def load_model(request: LoadRequest) -> dict:
        """Load ``<models-dir>/<name>/model`` by its name (never a path); loading a loaded model is a no-op."""
        loaded = await run_in_threadpool(registry.load, request.name)
        return loaded.info()

    @app.delete("/models/{name}", response_model=ModelInfo, responses=ERRORS)
    async def unload_model(name: str) -> dict:
        """Unload a model after answering the requests it has queued."""
        path = registry.get(name).path
        await run_in_threadpool(registry.unload, name)
        return {"name": name, "path": str(path), "loaded": False}

    @app.post("/transcribe", response_model=Transcription, responses=ERRORS)
    async def transcribe(
        audio: Annotated[UploadFile, File(description="Audio file: WAV, FLAC, OGG or MP3, any rate and channels.")],
        model: Annotated[str | None, Form(description="A loaded model's name (default: the server's).")] = None,
        beam_width: Annotated[
            int | None,
            Form(ge=1, le=settings.max_beam_width, description="Beam search width; 1 or unset is greedy."),
        ] = None,
        timestamps: Annotated[Literal["none", "word"], Form(description="'word' adds word timings.")] = "word",
        hotwords: Annotated[
            str | None,
            Form(
                max_length=settings.max_hotwords_chars,
                description="Phrases to boost, one per line or comma-separated (beam_width then defaults to 10).",
            ),
        ] = None,
    ) -> dict:
        """Transcribe one audio file with word timings and confidences."""
        loaded = registry.get(model)
        filename = audio.filename or "upload"
        check_content_type(filename, audio.content_type)
        data = await read_upload(audio, settings.max_upload_bytes)
        wave = await run_in_threadpool(
            decode_upload, data, filename, loaded.sampling_rate, settings.max_audio_seconds
        )
        try:
            decoder = await run_in_threadpool(loaded.decoder, beam_width, hotwords)
        except ValueError as error:
            raise HTTPException(422, f"hotwords: {error}") from error
        decoded = await asyncio.wrap_future(loaded.batcher.submit(wave, decoder))
        return {
            "text": decoded.text,
            "confidence": round(decoded.confidence, 4),
            "duration": round(len(wave) / loaded.sampling_rate, 3),
            "words": decoded.words if timestamps == "word" else [],
            "model": loaded.name,
        }

    return app
