"""The models a server can run: the ones in its models folder (``<models-dir>/<name>/model``), by name.

Clients load and unload models by *name* only, and a name is only ever looked up in the listing of the
models folder, so no request can make the server read an arbitrary path. The operator's ``--model`` folder
may live anywhere; it is registered under its run's name like the others.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from ..decoding import CTCDecoder, DecodingOptions, build_decoder
from ..inference import Transcriber, is_model_folder
from ..streaming import StreamingNotSupportedError, StreamingOptions, StreamingRecognizer
from .batching import BatchSettings, MicroBatcher

#: Decoders kept per model for distinct (beam width, hotwords) requests; building one takes milliseconds.
DECODER_CACHE_SIZE = 32


class UnknownModelError(LookupError):
    """A model name that is not loaded (or, for loading, not in the models folder); the message says which are."""


class ModelLoadError(ValueError):
    """A model folder that exists but cannot be loaded (broken config or weights)."""


def model_name(model_dir: Path) -> str:
    """``runs/<name>/model`` is called ``<name>``; any other folder by its own name (links are not followed)."""
    model_dir = Path(os.path.abspath(model_dir))
    return model_dir.parent.name if model_dir.name == "model" else model_dir.name


class LoadedModel:
    """A model in memory with its batching worker, the decoders its requests asked for and, for a model trained
    for streaming, its :class:`StreamingRecognizer` (sharing its weights; ``not_streaming`` says why there is
    none). Options a model cannot stream with (a chunk that is not a multiple of its frame) fail the load."""

    def __init__(
        self,
        name: str,
        path: Path,
        batching: BatchSettings,
        device: str | None = None,
        streaming: StreamingOptions | None = None,
    ):
        self.name = name
        self.path = path
        self.transcriber = Transcriber(path, device=device)
        self.batcher = MicroBatcher(self.transcriber, batching)
        self._decoders: OrderedDict[tuple[int | None, str, bool], CTCDecoder] = OrderedDict()
        self._lock = threading.Lock()
        self.recognizer: StreamingRecognizer | None = None
        self.not_streaming: StreamingNotSupportedError | None = None
        try:
            self.recognizer = StreamingRecognizer(self.transcriber.folder, streaming)
        except StreamingNotSupportedError as error:
            self.not_streaming = error

    @property
    def sampling_rate(self) -> int:
        return self.transcriber.feature_extractor.sampling_rate

    def decoder(self, beam_width: int | None = None, hotwords: str | None = None, use_lm: bool = True) -> CTCDecoder:
        """Beam search with the model folder's LM (when it has one and ``use_lm``), else greedy, or beam search of
        ``beam_width`` (10 when only hotwords are given) boosting ``hotwords``.

        ``hotwords`` is the text of a ``--hotwords`` file (one phrase per line, ``phrase<TAB>weight``), commas
        also separating phrases; it is parsed by the same code as that file. Raises ValueError when no phrase
        is left after normalisation.
        """
        key = (beam_width, (hotwords or "").strip(), use_lm)
        with self._lock:
            if key in self._decoders:
                self._decoders.move_to_end(key)
                return self._decoders[key]
        if not key[1]:
            options = DecodingOptions.for_model(self.path, use_lm, beam_width)
            decoder = build_decoder(self.transcriber.tokenizer, options)
        else:
            with tempfile.TemporaryDirectory(prefix="ai2text-hotwords-") as folder:
                path = Path(folder) / "hotwords.txt"
                path.write_text(key[1].replace(",", "\n"), encoding="utf-8")
                options = DecodingOptions.for_model(self.path, use_lm, beam_width, hotwords=str(path))
                decoder = build_decoder(self.transcriber.tokenizer, options)
        with self._lock:
            self._decoders[key] = decoder
            while len(self._decoders) > DECODER_CACHE_SIZE:
                self._decoders.popitem(last=False)
        return decoder

    def info(self) -> dict:
        return {
            "name": self.name,
            "path": str(self.path),
            "loaded": True,
            "requests": self.batcher.requests,
            "batches": self.batcher.batches,
        }

    def close(self) -> None:
        self.batcher.close()


class ModelRegistry:
    """Loaded models by name, and the models folder they may be loaded from.

    Args:
        models_dir: every ``<models_dir>/*/model`` model folder (any that ``load_model_folder`` opens) can be
            loaded by name; None offers none (model management is off).
        batching: batching settings of each loaded model.
        device: torch device of every model (CUDA when available by default).
        streaming: how live streams of every model are cut into steps and utterances.
    """

    def __init__(
        self,
        models_dir: str | Path | None,
        batching: BatchSettings | None = None,
        device: str | None = None,
        streaming: StreamingOptions | None = None,
    ):
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.batching = batching or BatchSettings()
        self.device = device
        self.streaming = streaming
        self.default: str | None = None
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()  # serialises loads, so two requests never load the same model twice

    def available(self) -> dict[str, Path]:
        """Model folders in the models folder, by name."""
        if self.models_dir is None or not self.models_dir.is_dir():
            return {}
        folders = sorted(p for p in self.models_dir.glob("*/model") if is_model_folder(p))
        return {p.parent.name: p for p in folders}

    def add(self, path: str | Path) -> LoadedModel:
        """Load the operator's model folder (any path; it becomes the default model)."""
        path = Path(path)
        with self._lock:
            loaded = self._loaded.get(model_name(path)) or self._load(model_name(path), path)
            self.default = self.default or loaded.name
        return loaded

    def load(self, name: str) -> LoadedModel:
        """Load ``<models_dir>/<name>/model`` (already loaded: returned as is)."""
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            available = self.available()
            if name not in available:
                raise UnknownModelError(
                    f"No model named {name!r} in {self.models_dir}/ (a model is <models-dir>/<name>/model with a "
                    f"config.json). Available: {', '.join(available) or 'none'}."
                )
            return self._load(name, available[name])

    def _load(self, name: str, path: Path) -> LoadedModel:
        try:
            loaded = LoadedModel(name, path, self.batching, self.device, self.streaming)
        except Exception as error:  # whatever a broken folder makes transformers raise, as one clear error
            raise ModelLoadError(f"Cannot load model {name!r} from {path}: {error}") from error
        self._loaded[name] = loaded
        return loaded

    def get(self, name: str | None = None) -> LoadedModel:
        """A loaded model by name, or the default one."""
        name = name or self.default
        loaded = self._loaded.get(name) if name else None
        if loaded is None:
            hint = " It is in the models folder: load it with POST /models/load." if name in self.available() else ""
            raise UnknownModelError(
                f"Model {name!r} is not loaded.{hint} Loaded: {', '.join(self._loaded) or 'none'}."
                if name
                else "No model is loaded: load one with POST /models/load, or name one in the 'model' field."
            )
        return loaded

    def unload(self, name: str) -> None:
        """Free a loaded model once the requests it has queued are answered."""
        with self._lock:
            loaded = self.get(name)
            del self._loaded[name]
        loaded.close()

    def listing(self) -> list[dict]:
        """Loaded models, then the loadable ones, for ``GET /models``."""
        loaded = [m.info() for m in list(self._loaded.values())]
        return loaded + [
            {"name": name, "path": str(path), "loaded": False}
            for name, path in self.available().items()
            if name not in self._loaded
        ]

    def close(self) -> None:
        for name in list(self._loaded):
            self.unload(name)
