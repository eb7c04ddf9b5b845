"""The HTTP API (FastAPI): transcribe uploads, manage loaded models, and a page to try it at ``/``.

Every error answers ``{"detail": "<message>"}`` with a 4xx code (503 when busy); who may call and how much a
request may cost is checked before it reaches an endpoint (:mod:`.guards`), and an upload's header before it
is decoded (:mod:`.uploads`). Interactive API docs are at ``/docs`` (and ``/redoc``).
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoint annotations at runtime, and they
# refer to this factory's settings.
import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
    WebSocket,
    params,
)
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from ..corpus.formats import word_subtitles
from ..decoding.hotwords import DEFAULT_HOTWORD_WEIGHT, MAX_HOTWORD_WEIGHT
from ..streaming import StreamingOptions
from .batching import BatchSettings, QueueFullError, WorkerClosedError
from .guards import AccessSettings, Admission, ApiKeyCheck, BodySizeLimit, HostCheck, OriginCheck
from .limits import StreamLimits
from .registry import ModelLoadError, ModelRegistry, UnknownModelError
from .streams import PROTOCOL_DOC, StreamHub
from .uploads import AudioLimits, check_content_type, decode_upload, read_upload

#: Where the API docs' scripts are served (FastAPIOffline's default, named here for the API key check).
DOCS_STATIC = "/static-offline-docs"
#: Paths anyone may fetch when an API key is set: the page, the API docs and the health check.
PUBLIC_PATHS = ("/", "/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")


@dataclass(frozen=True)
class ServeSettings:
    """Server limits and where models come from.

    Args:
        models_dir: ``<models_dir>/<name>/model`` folders can be loaded by name (``POST /models/load``) when
            ``access.model_management`` is on; unused otherwise.
        audio: what an uploaded recording may be (size, length, channels, rate, decoded size).
        streams: what live streams (WebSocket ``/stream``) may cost: how many, how long, frame size, buffering.
        streaming: how live streams are cut into encoder steps (``chunk_ms``) and utterances (endpointing).
        access: API key, model management, served host names and CORS origins.
        max_beam_width: largest beam a request may ask for (beam search time grows with it).
        max_hotwords_chars: longest hotwords text a request may send.
        decode_workers: uploads decoded at once; the others wait (each decode may take about three times
            ``audio.max_decoded_mb`` at its peak).
        batching: how concurrent requests are grouped into model runs; its ``max_queue`` also bounds the
            transcriptions the whole server holds at once (being uploaded, decoded or waiting), more get 503.
        device: torch device of the models (CUDA when available by default).
    """

    models_dir: Path = Path("runs")
    audio: AudioLimits = field(default_factory=AudioLimits)
    streams: StreamLimits = field(default_factory=StreamLimits)
    streaming: StreamingOptions = field(default_factory=StreamingOptions)
    access: AccessSettings = field(default_factory=AccessSettings)
    max_beam_width: int = 64
    max_hotwords_chars: int = 10_000
    decode_workers: int = 2
    batching: BatchSettings = field(default_factory=BatchSettings)
    device: str | None = None


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
    status: Literal["ok", "unavailable"] = Field(description="'unavailable' (with code 503) without a default model")
    default: str | None = Field(description="the model used when a request names none")
    loaded: list[str]


class ErrorMessage(BaseModel):
    detail: str


ERRORS = {code: {"model": ErrorMessage} for code in (400, 401, 403, 404, 413, 415, 422, 503)}
#: Media types of the subtitle answers of ``POST /transcribe`` (``format=srt|vtt``).
SUBTITLE_TYPES = {"srt": "application/x-subrip", "vtt": "text/vtt"}
TRANSCRIBE_ANSWERS = {
    **ERRORS,
    200: {"content": {f"{media_type}; charset=utf-8": {} for media_type in SUBTITLE_TYPES.values()}},
}
ResponseFormat = Literal["json", "srt", "vtt"]
FORMAT_HELP = "'json' (the default): text, confidence and word timings; 'srt' or 'vtt': subtitles of the word timings."
MANAGEMENT_OFF = (
    "Model management is off on this server: start it with --allow-model-management (and an API key, "
    "--api-key-file or $AI2TEXT_API_KEY) to load and unload models over HTTP."
)


def _page(settings: ServeSettings) -> str:
    page = resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")
    return page.replace("<!-- limits -->", f"This server takes {settings.audio.describe()}.")


def _subtitles(words: list[dict], fmt: str, filename: str) -> Response:
    """The word timings as an SRT or WebVTT download named after the upload."""
    stem = re.sub(r"[^\w.-]+", "_", Path(filename).stem, flags=re.ASCII).strip("._") or "transcript"
    return Response(
        word_subtitles(words, fmt),
        media_type=f"{SUBTITLE_TYPES[fmt]}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'},
    )


async def reject_unknown_parameters(connection: HTTPConnection) -> None:
    """422 naming the query parameters (and form fields) an endpoint does not take: ignoring them would
    silently drop what the client meant, e.g. ``?beam_width=4`` sent to an endpoint that reads form fields."""
    if not isinstance(connection, Request):  # a WebSocket: /stream answers in its own protocol
        return
    request = connection
    dependant = request.scope["route"].dependant
    form_fields = [p.alias for p in dependant.body_params if isinstance(p.field_info, params.Form)]
    where = f"{request.method} {request.url.path}"
    taken = [p.alias for p in dependant.query_params]
    unknown = sorted(set(request.query_params) - set(taken))
    if unknown:
        hint = f"; send options as multipart form fields ({', '.join(form_fields)})" if form_fields else ""
        raise HTTPException(
            422, f"Unknown query parameter(s) {', '.join(unknown)}: {where} takes {', '.join(taken) or 'none'}{hint}."
        )
    if form_fields:
        unknown = sorted(set((await request.form()).keys()) - set(form_fields))  # the form FastAPI already parsed
        if unknown:
            raise HTTPException(
                422, f"Unknown form field(s) {', '.join(unknown)}: {where} takes {', '.join(form_fields)}."
            )


def create_app(model: str | Path | None = None, settings: ServeSettings | None = None) -> FastAPI:
    """The API serving ``model`` (a model folder, loaded now and used by default) and the models folder.

    Loading happens here, before any request, so a bad ``model`` fails at start-up with its message.
    """
    settings = settings or ServeSettings()
    access = settings.access
    models_dir = settings.models_dir if access.model_management else None
    registry = ModelRegistry(models_dir, settings.batching, settings.device, settings.streaming)
    if model is not None:
        registry.add(model)
    decoding = asyncio.Semaphore(settings.decode_workers)
    streams = StreamHub(registry, settings.streams)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(streams.close)
        await run_in_threadpool(registry.close)

    # /docs and /redoc with their scripts served by us: FastAPI's default pages load them from a CDN,
    # which leaves the docs blank on an offline machine.
    app = FastAPIOffline(
        title="ai2text",
        summary="Vietnamese speech-to-text (CTC) with word timings and confidences.",
        description=PROTOCOL_DOC,
        lifespan=lifespan,
        static_url=DOCS_STATIC,
        dependencies=[Depends(reject_unknown_parameters)],
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

    # Added innermost first: a request meets the host check, CORS, the API key, the body limit, admission.
    app.add_middleware(Admission, path="/transcribe", limit=settings.batching.max_queue)
    app.add_middleware(BodySizeLimit, upload_path="/transcribe", max_upload_bytes=settings.audio.max_upload_bytes)
    if access.api_key:
        app.add_middleware(ApiKeyCheck, key=access.api_key, public=PUBLIC_PATHS, public_prefix=DOCS_STATIC + "/")
    if access.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(access.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key"],
        )
    app.add_middleware(OriginCheck, allowed=access.cors_origins)
    app.add_middleware(HostCheck, allowed=access.allowed_hosts)
    app.state.settings = settings  # read by uvicorn_options (the WebSocket message size)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return _page(settings)

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health(response: Response) -> dict:
        """Ok (200) while the default model is loaded; 503 otherwise, e.g. after it was unloaded."""
        loaded = [m["name"] for m in registry.listing() if m["loaded"]]
        ok = registry.default is not None and registry.default in loaded
        if not ok:
            response.status_code = 503
        return {"status": "ok" if ok else "unavailable", "default": registry.default, "loaded": loaded}

    @app.get("/models", response_model=ModelList)
    async def models() -> dict:
        """Loaded models (with request and batch counts), then those the models folder offers for loading
        (with ``--allow-model-management``)."""
        return {"default": registry.default, "models": registry.listing()}

    @app.post("/models/load", response_model=ModelInfo, responses=ERRORS)
    async def load_model(request: LoadRequest) -> dict:
        """Load ``<models-dir>/<name>/model`` by its name (never a path); loading a loaded model is a no-op.

        Only with ``--allow-model-management`` (403 otherwise)."""
        if not access.model_management:
            raise HTTPException(403, MANAGEMENT_OFF)
        loaded = await run_in_threadpool(registry.load, request.name)
        return loaded.info()

    @app.delete("/models/{name}", response_model=ModelInfo, responses=ERRORS)
    async def unload_model(name: str) -> dict:
        """Unload a model after answering the requests it has queued (``/health`` is 503 once the default
        model is unloaded). Only with ``--allow-model-management`` (403 otherwise)."""
        if not access.model_management:
            raise HTTPException(403, MANAGEMENT_OFF)
        path = registry.get(name).path
        await run_in_threadpool(registry.unload, name)
        return {"name": name, "path": str(path), "loaded": False}

    @app.post("/transcribe", response_model=Transcription, responses=TRANSCRIBE_ANSWERS)
    async def transcribe(
        audio: Annotated[
            UploadFile, File(description=f"Audio file: WAV, FLAC, OGG or MP3; {settings.audio.describe()}.")
        ],
        model: Annotated[str | None, Form(description="A loaded model's name (default: the server's).")] = None,
        beam_width: Annotated[
            int | None,
            Form(
                ge=1,
                le=settings.max_beam_width,
                description="Beam search width; unset: 10 with the model's language model or hotwords, else greedy.",
            ),
        ] = None,
        use_lm: Annotated[
            bool,
            Form(description="Decode with the model folder's language model when it has one; false: without."),
        ] = True,
        timestamps: Annotated[Literal["none", "word"], Form(description="'word' adds word timings.")] = "word",
        hotwords: Annotated[
            str | None,
            Form(
                max_length=settings.max_hotwords_chars,
                description="Phrases to boost, one per line or comma-separated ('phrase<TAB>weight' sets a "
                f"weight from 0 to {MAX_HOTWORD_WEIGHT:g}, default {DEFAULT_HOTWORD_WEIGHT:g}); beam_width then "
                "defaults to 10.",
            ),
        ] = None,
        form_format: Annotated[ResponseFormat | None, Form(alias="format", description=FORMAT_HELP)] = None,
        query_format: Annotated[
            ResponseFormat | None,
            Query(
                alias="format", description="The same as the form field 'format', for clients that set it in the URL."
            ),
        ] = None,
    ) -> dict | Response:
        """Transcribe one audio file with word timings and confidences, or as subtitles (``format=srt|vtt``).

        Options are form fields (``format`` may also be a query parameter); any other query parameter or an
        unknown field is refused (422)."""
        if form_format and query_format and form_format != query_format:
            raise HTTPException(422, f"format: the query says {query_format!r} and the form {form_format!r}; send one.")
        response_format = form_format or query_format or "json"
        loaded = registry.get(model)
        filename = audio.filename or "upload"
        check_content_type(filename, audio.content_type)
        async with decoding:  # the upload's bytes and its decode are in memory only here, a few at a time
            data = await read_upload(audio, settings.audio.max_upload_bytes)
            wave = await run_in_threadpool(decode_upload, data, filename, loaded.sampling_rate, settings.audio)
            del data
        try:
            decoder = await run_in_threadpool(loaded.decoder, beam_width, hotwords, use_lm)
        except ValueError as error:
            raise HTTPException(422, f"hotwords: {error}") from error
        decoded = await asyncio.wrap_future(loaded.batcher.submit(wave, decoder))
        if response_format != "json":
            return _subtitles(decoded.words, response_format, filename)
        return {
            "text": decoded.text,
            "confidence": round(decoded.confidence, 4),
            "duration": round(len(wave) / loaded.sampling_rate, 3),
            "words": decoded.words if timestamps == "word" else [],
            "model": loaded.name,
        }

    @app.websocket("/stream")
    async def stream(websocket: WebSocket) -> None:
        await streams.serve(websocket)

    return app
