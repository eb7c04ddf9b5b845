"""Loading any CTC model folder, and transcribing audio files and input batches with it.

:func:`load_model_folder` is the one way every command opens a model folder: ours (``AI2TextForCTC``), any
transformers ``AutoModelForCTC`` checkpoint (Wav2Vec2, w2v-BERT 2.0, HuBERT, WavLM, Data2VecAudio,
Wav2Vec2-Conformer), an ONNX export (``ai2text export``) or a peft LoRA adapter folder on its base model.
Files are decoded by our own loader (soundfile + soxr), not ffmpeg, so the CLI needs no external binary and
resampling is the same as in data preparation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForCTC, AutoTokenizer, Wav2Vec2CTCTokenizer
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.models.auto.modeling_auto import MODEL_FOR_CTC_MAPPING_NAMES

from .configuration_ai2text import AI2TextConfig
from .data.audio import featurize_batch, load_audio
from .data.sampler import DurationBatchSampler
from .decoding import CTCDecoder, DecodedUtterance, DecodingOptions, build_decoder
from .feature_extraction_ai2text import AI2TextFeatureExtractor, pause_segments
from .modeling_ai2text import AI2TextForCTC
from .onnx_model import ONNX_NAME, OnnxCTCModel
from .processing_ai2text import AI2TextProcessor
from .tokenization_ai2text import AI2TextTokenizer

ADAPTER_CONFIG = "adapter_config.json"
#: The CTC families the commands are tested with (any other ``AutoModelForCTC`` is tried the same way).
TESTED_FAMILIES = (
    "AI2TextForCTC",
    "Wav2Vec2ForCTC",
    "Wav2Vec2BertForCTC",
    "HubertForCTC",
    "WavLMForCTC",
    "Data2VecAudioForCTC",
    "Wav2Vec2ConformerForCTC",
)


def is_model_folder(path: str | Path) -> bool:
    """A folder with a model configuration (``config.json``) or a peft adapter (``adapter_config.json``)."""
    path = Path(path)
    return (path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file()


def require_model_folder(path: str | Path, option: str = "--model") -> Path:
    """``path`` if it is a model folder, else the one error that says what to give instead."""
    path = Path(path)
    if not is_model_folder(path):
        raise FileNotFoundError(
            f"{option}: {path} is not a model folder (no config.json). Give a run's model folder "
            "(runs/<name>/model), an `ai2text export` folder, a saved AutoModelForCTC checkpoint "
            "(save_pretrained of the model, its feature extractor and tokenizer) or a peft LoRA adapter folder."
        )
    return path


def _unsupported(path: Path, model_type: str) -> ValueError:
    return ValueError(
        f"{path} holds a {model_type!r} model, which is not a CTC model: ai2text reads CTC speech models only "
        f"({', '.join(TESTED_FAMILIES)}, or another AutoModelForCTC). Sequence-to-sequence models such as "
        "Whisper decode with transformers' own pipeline."
    )


def samples_per_logit_frame(config, feature_extractor: SequenceFeatureExtractor) -> int:
    """Audio samples per output (logit) frame: the product of the model's strides over its input.

    ``inputs_to_logits_ratio`` of our config and of the wav2vec2 family (the conv strides: 320 samples); w2v-BERT
    reads filterbank frames every ``stride`` x 10 ms, which its adapter (when present) subsamples again.
    """
    if config.model_type == "wav2vec2-bert":
        hop = feature_extractor.sampling_rate // 100  # SeamlessM4TFeatureExtractor's 10 ms frame shift
        ratio = hop * feature_extractor.stride
        return ratio * config.adapter_stride**config.num_adapter_layers if config.add_adapter else ratio
    return int(config.inputs_to_logits_ratio)


@dataclass
class ModelFolder:
    """What every command needs of a model folder.

    ``kind``: ``"ours"``, ``"transformers"`` (any other AutoModelForCTC), ``"onnx"`` (an export of either, run on
    onnxruntime) or ``"lora-adapter"`` (a peft adapter merged into its base model).
    """

    path: Path
    kind: str
    model: torch.nn.Module | OnnxCTCModel
    feature_extractor: SequenceFeatureExtractor
    tokenizer: Wav2Vec2CTCTokenizer
    samples_per_frame: int

    @property
    def architecture(self) -> str:
        """The model class name, e.g. ``Wav2Vec2BertForCTC`` (for an export: the class it was exported from)."""
        architectures = getattr(self.model.config, "architectures", None) or [type(self.model).__name__]
        return architectures[0]

    @property
    def seconds_per_frame(self) -> float:
        return self.samples_per_frame / self.feature_extractor.sampling_rate

    @property
    def seconds_per_input(self) -> float:
        """Seconds of audio per step of the model's input: a sample, or a (stacked) filterbank frame."""
        if self.input_name == "input_values":
            return 1 / self.feature_extractor.sampling_rate
        hop = getattr(self.feature_extractor, "hop_length", self.feature_extractor.sampling_rate // 100)
        return hop * getattr(self.feature_extractor, "stride", 1) / self.feature_extractor.sampling_rate

    @property
    def vocabulary(self) -> dict[str, int]:
        return self.tokenizer.get_vocab()

    @property
    def input_name(self) -> str:
        """The model's main input: ``input_features`` (ours, w2v-BERT) or ``input_values`` (raw-audio models)."""
        return self.feature_extractor.model_input_names[0]

    @property
    def uses_attention_mask(self) -> bool:
        """Models whose feature extractor gives no mask (wav2vec2 with group norm) are run without one, as in
        transformers: they were trained on zero-padded batches."""
        return bool(self.feature_extractor.return_attention_mask)

    @property
    def tone_placement(self) -> str:
        """How the vocabulary spells tones (``classic`` for a foreign tokenizer, which has no such setting)."""
        return self.tokenizer.tone_placement

    def save_processing(self, output_dir: str | Path) -> None:
        """Write the feature extractor and tokenizer files to ``output_dir`` (e.g. beside an exported model)."""
        if isinstance(self.tokenizer, AI2TextTokenizer):
            AI2TextProcessor(feature_extractor=self.feature_extractor, tokenizer=self.tokenizer).save_pretrained(
                str(output_dir)
            )
        else:
            self.feature_extractor.save_pretrained(str(output_dir))
            self.tokenizer.save_pretrained(str(output_dir))


def _ctc_config(path: Path):
    """The folder's configuration, refused unless it describes a CTC model."""
    config = AutoConfig.from_pretrained(str(path))
    if not isinstance(config, AI2TextConfig) and config.model_type not in MODEL_FOR_CTC_MAPPING_NAMES:
        raise _unsupported(path, config.model_type)
    return config


def _processing(path: Path, config, fallback: Path | None = None):
    """Feature extractor and CTC tokenizer of ``path`` (or, for an adapter folder without them, of ``fallback``)."""
    source = path if fallback is None or (path / "tokenizer_config.json").is_file() else fallback
    if isinstance(config, AI2TextConfig):
        return AI2TextFeatureExtractor.from_pretrained(str(source)), AI2TextTokenizer.from_pretrained(str(source))
    try:
        feature_extractor = AutoFeatureExtractor.from_pretrained(str(source))
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"{source} has no feature extractor or tokenizer files (preprocessor_config.json / processor_config.json, "
            "tokenizer_config.json, vocab.json): save them beside the model, e.g. "
            "processor.save_pretrained(folder), or fine-tune it with `ai2text train --init_from` which saves them."
        ) from error
    if not isinstance(tokenizer, Wav2Vec2CTCTokenizer):
        raise ValueError(
            f"{source}: the tokenizer is a {type(tokenizer).__name__}; CTC decoding needs a character tokenizer "
            "with a word delimiter (Wav2Vec2CTCTokenizer or ours)."
        )
    if not hasattr(tokenizer, "tone_placement"):
        # What our decoders (hotwords) and metrics read of a vocabulary; a foreign one is taken as classic spelling.
        tokenizer.tone_placement = "classic"
    return feature_extractor, tokenizer


def _load_adapter(path: Path, device: torch.device) -> ModelFolder:
    """A peft LoRA adapter folder: its base model folder loaded, the adapter applied and merged in."""
    settings = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = settings.get("base_model_name_or_path")
    if not base or not is_model_folder(base):
        raise FileNotFoundError(
            f"{path} is a LoRA adapter for the base model {base!r}, which is not here: put that model folder at "
            "that path (or edit base_model_name_or_path in adapter_config.json), or merge the adapter into its "
            "base first."
        )
    try:
        from peft import PeftModel
    except ImportError as error:
        raise ImportError(f"{path} is a LoRA adapter; loading it needs peft: pip install peft") from error
    folder = load_model_folder(base, device)
    if folder.kind not in ("ours", "transformers"):
        raise ValueError(f"{path}: the adapter's base {base} is a {folder.kind} folder, not a PyTorch model.")
    feature_extractor, tokenizer = _processing(path, folder.model.config, fallback=Path(base))
    _fit_head(folder.model, tokenizer)
    model = PeftModel.from_pretrained(folder.model, str(path)).merge_and_unload().to(device).eval()
    return ModelFolder(path, "lora-adapter", model, feature_extractor, tokenizer, folder.samples_per_frame)


def _fit_head(model: torch.nn.Module, tokenizer: Wav2Vec2CTCTokenizer) -> None:
    """An output layer sized to the adapter's vocabulary (its weights come with the adapter, which trains it)."""
    head = model.lm_head
    if head.out_features != len(tokenizer):
        model.lm_head = torch.nn.Linear(head.in_features, len(tokenizer)).to(head.weight.device)
        model.config.vocab_size, model.config.pad_token_id = len(tokenizer), tokenizer.pad_token_id


def load_model_folder(path: str | Path, device: str | torch.device | None = None) -> ModelFolder:
    """Open any CTC model folder for inference: the model (evaluation mode, on ``device``; CUDA when available by
    default; an ONNX export always on the CPU), its feature extractor and its CTC tokenizer."""
    path = require_model_folder(path)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not (path / "config.json").is_file():
        return _load_adapter(path, device)
    config = _ctc_config(path)
    feature_extractor, tokenizer = _processing(path, config)
    if (path / ONNX_NAME).is_file():
        model, kind = OnnxCTCModel(path), "onnx"
    elif isinstance(config, AI2TextConfig):
        model, kind = AI2TextForCTC.from_pretrained(str(path)).to(device).eval(), "ours"
    else:
        model, kind = AutoModelForCTC.from_pretrained(str(path)).to(device).eval(), "transformers"
    frame = samples_per_logit_frame(config, feature_extractor)
    return ModelFolder(path, kind, model, feature_extractor, tokenizer, frame)


def join_utterances(
    parts: Sequence[DecodedUtterance], offsets: Sequence[float], weights: Sequence[float]
) -> DecodedUtterance:
    """Consecutive parts of one recording as one result: texts joined by spaces, word times shifted by each part's
    start (``offsets``, seconds), confidence the mean of the parts' weighted by ``weights`` (their lengths)."""
    words = [
        {**word, "start": round(word["start"] + offset, 3), "end": round(word["end"] + offset, 3)}
        for part, offset in zip(parts, offsets)
        for word in part.words
    ]
    total = float(sum(weights)) or 1.0
    confidence = sum(part.confidence * weight for part, weight in zip(parts, weights)) / total
    text = " ".join(part.text for part in parts if part.text)
    return DecodedUtterance(text=text, words=words, confidence=confidence)


def duration_batches(durations: Sequence[float], max_batch_seconds: float) -> Iterator[list[int]]:
    """Indices grouped by similar duration so long and short inputs don't pad each other.

    The training sampler's packing without shuffling; an input longer than the budget gets a batch of its own.
    """
    if not len(durations):
        return iter(())
    budget = max(max_batch_seconds, float(max(durations)))
    return iter(DurationBatchSampler(durations, budget, shuffle=False))


class Transcriber:
    """A loaded model folder (any :func:`load_model_folder` reads): transcription with word timestamps and
    confidences.

    Args:
        model_dir: a folder written by training (``runs/<name>/model``), ``save_pretrained``, ``ai2text export``,
            any transformers CTC checkpoint or a LoRA adapter folder.
        device: torch device; CUDA when available by default.
        max_batch_seconds: audio per forward pass when transcribing many inputs.
        decoding: greedy or beam search with an LM and hotwords; default: the folder's own LM
            (``language_model/``, beam search) when it has one, else greedy (:meth:`DecodingOptions.for_model`).
        chunk_seconds: inputs longer than this are cut where nobody speaks (pauses), and each part is transcribed
            on its own, as training saw single utterances; a part still longer runs through the encoder in
            windows of this length (attention and activations grow with the input), their logits stitched.
        stride_seconds: context added on each side of a window and dropped from its logits, so every
            kept frame saw enough audio around it.
    """

    def __init__(
        self,
        model_dir: str | Path,
        device: str | None = None,
        max_batch_seconds: float = 240.0,
        decoding: DecodingOptions | None = None,
        chunk_seconds: float = 30.0,
        stride_seconds: float = 4.0,
    ):
        if not 0 <= 2 * stride_seconds < chunk_seconds:
            raise ValueError(f"stride_seconds ({stride_seconds}) must be under half of chunk_seconds ({chunk_seconds})")
        self.folder = load_model_folder(model_dir, device)
        self.model_dir = self.folder.path
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = self.folder.model
        self.feature_extractor = self.folder.feature_extractor
        self.tokenizer = self.folder.tokenizer
        self.max_batch_seconds = max_batch_seconds
        self.seconds_per_frame = self.folder.seconds_per_frame
        self.decoding = decoding or DecodingOptions.for_model(self.model_dir)
        self.decoder = build_decoder(self.tokenizer, self.decoding)
        self.chunk_seconds = chunk_seconds
        self.stride_seconds = stride_seconds

    def inputs(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The model's unpadded inputs of 16 kHz waveforms (log-mel frames, normalised samples, ...)."""
        return featurize_batch(waveforms, self.feature_extractor)

    def model_arguments(self, inputs: Sequence[np.ndarray]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One padded batch of unpadded model inputs as the model's keyword arguments (with the attention mask
        where the family takes one: bool for ours, int64 for transformers'), and the inputs' lengths."""
        tensors = [torch.as_tensor(np.asarray(f, dtype=np.float32)) for f in inputs]
        lengths = torch.tensor([t.shape[0] for t in tensors])
        batch = torch.nn.utils.rnn.pad_sequence(
            tensors, batch_first=True, padding_value=self.feature_extractor.padding_value
        )
        arguments = {self.folder.input_name: batch.to(self.device)}
        if self.folder.uses_attention_mask:
            mask = torch.arange(batch.shape[1])[None, :] < lengths[:, None]
            arguments["attention_mask"] = (mask if isinstance(self.model.config, AI2TextConfig) else mask.long()).to(
                self.device
            )
        return arguments, lengths

    @torch.inference_mode()
    def logits(self, inputs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (batch, frames, vocab) of one padded batch of unpadded model inputs (:meth:`inputs`; a prepared
        dataset's ``input_features``), and the number of valid logit frames of each."""
        arguments, lengths = self.model_arguments(inputs)
        logits = self.model(**arguments).logits
        return logits, torch.as_tensor(self.model._get_feat_extract_output_lengths(lengths)).long()

    def decode_features(
        self, features: Sequence[np.ndarray], word_timestamps: bool = True, decoder: CTCDecoder | None = None
    ) -> list[DecodedUtterance]:
        """Decode one batch of unpadded model inputs, with ``decoder`` instead of our own if given
        (a server shares one model between requests that ask for different decoding)."""
        logits, out_lengths = self.logits(features)
        return (decoder or self.decoder).decode(logits, out_lengths, self.seconds_per_frame, word_timestamps)

    def _windows(self, num_samples: int) -> list[tuple[int, int, int, int]]:
        """``(start, end, keep_from, keep_to)`` sample positions: each window reads ``[start, end)`` and
        contributes the logits of ``[keep_from, keep_to)``; the kept parts tile the input without overlap. Steps and
        strides are whole logit frames, so no window adds or drops a frame where the kept parts meet."""
        sr, frame = self.feature_extractor.sampling_rate, self.folder.samples_per_frame
        step = max(frame, int((self.chunk_seconds - 2 * self.stride_seconds) * sr) // frame * frame)
        stride = int(self.stride_seconds * sr) // frame * frame
        return [
            (max(0, keep - stride), min(num_samples, keep + step + stride), keep, min(num_samples, keep + step))
            for keep in range(0, num_samples, step)
        ]

    def long_logits(self, waveform: np.ndarray) -> torch.Tensor:
        """Logits of one long input on a single frame grid (frame ``i`` at ``i * seconds_per_frame``): its parts
        between pauses computed alone and batched by duration, as :meth:`transcribe_arrays` reads them (no window
        overlap to pay for), a part still longer than ``chunk_seconds`` in stitched windows. Cuts fall on whole
        logit frames and every part but the last gives exactly its own frames, so the parts join without a gap."""
        sr, samples_per_frame = self.feature_extractor.sampling_rate, self.folder.samples_per_frame
        parts = pause_segments(waveform, sr, align=samples_per_frame)
        pieces: list[torch.Tensor | None] = [None] * len(parts)
        durations = [(end - start) / sr for start, end in parts]
        short = [i for i, d in enumerate(durations) if d <= self.chunk_seconds]
        # Small batches as in _window_logits: they bound the peak memory of an hour-long file.
        for batch in duration_batches(
            [durations[i] for i in short], min(self.max_batch_seconds, 2 * self.chunk_seconds)
        ):
            indices = [short[i] for i in batch]
            logits, lengths = self.logits(self.inputs([waveform[parts[i][0] : parts[i][1]] for i in indices]))
            for row, index in enumerate(indices):
                pieces[index] = logits[row, : lengths[row]].float().cpu()
        for index in (i for i, d in enumerate(durations) if d > self.chunk_seconds):
            pieces[index] = self._window_logits(waveform[parts[index][0] : parts[index][1]])
        for index, (start, end) in enumerate(parts[:-1]):
            frames, piece = (end - start) // samples_per_frame, pieces[index]
            # The model's frame count for a part may differ from its share of the grid by one either way.
            pieces[index] = torch.cat([piece[:frames], piece[-1:].expand(max(0, frames - len(piece)), -1)])
        return torch.cat(pieces)  # type: ignore[arg-type]

    def _window_logits(self, waveform: np.ndarray) -> torch.Tensor:
        """Logits of one long input, computed window by window and stitched at frame boundaries."""
        sr = self.feature_extractor.sampling_rate
        samples_per_frame = self.folder.samples_per_frame
        windows = self._windows(len(waveform))
        pieces: list[torch.Tensor | None] = [None] * len(windows)
        durations = [(end - start) / sr for start, end, _, _ in windows]
        # Two windows per forward pass: bigger batches barely run faster on CPU but raise the peak memory of an
        # hour-long file (bench_long_audio measures it; docs/results.md).
        for batch in duration_batches(durations, min(self.max_batch_seconds, 2 * self.chunk_seconds)):
            logits, lengths = self.logits(self.inputs([waveform[windows[i][0] : windows[i][1]] for i in batch]))
            for row, index in enumerate(batch):
                start, _, keep_from, keep_to = windows[index]
                first = round((keep_from - start) / samples_per_frame)
                last = min(int(lengths[row]), round((keep_to - start) / samples_per_frame))
                pieces[index] = torch.as_tensor(logits[row, first:last]).float().cpu()
        return torch.cat(pieces)  # type: ignore[arg-type]

    def _transcribe_long(
        self, waveform: np.ndarray, word_timestamps: bool, decoder: CTCDecoder | None
    ) -> DecodedUtterance:
        """One input longer than ``chunk_seconds``: its parts between pauses transcribed one by one, then joined."""
        sr = self.feature_extractor.sampling_rate
        segments = pause_segments(waveform, sr)
        parts = [waveform[start:end] for start, end in segments]
        decoded = self.transcribe_arrays(parts, word_timestamps, decoder, split_long=False)
        return join_utterances(decoded, [start / sr for start, _ in segments], [len(p) for p in parts])

    def transcribe_arrays(
        self,
        waveforms: Sequence[np.ndarray],
        word_timestamps: bool = True,
        decoder: CTCDecoder | None = None,
        split_long: bool = True,
    ) -> list[DecodedUtterance]:
        """Transcribe 16 kHz mono float waveforms, batched by duration; inputs longer than ``chunk_seconds`` cut at
        pauses (``split_long``) and parts still that long in stitched windows (``decoder`` as in
        :meth:`decode_features`)."""
        sr = self.feature_extractor.sampling_rate
        durations = [len(w) / sr for w in waveforms]
        results: list[DecodedUtterance | None] = [None] * len(waveforms)
        short = [i for i, d in enumerate(durations) if d <= self.chunk_seconds]
        for batch in duration_batches([durations[i] for i in short], self.max_batch_seconds):
            indices = [short[i] for i in batch]
            decoded_batch = self.decode_features(self.inputs([waveforms[i] for i in indices]), word_timestamps, decoder)
            for index, decoded in zip(indices, decoded_batch):
                results[index] = decoded
        for index in (i for i, d in enumerate(durations) if d > self.chunk_seconds):
            if split_long:
                results[index] = self._transcribe_long(waveforms[index], word_timestamps, decoder)
                continue
            logits = self._window_logits(waveforms[index])
            (results[index],) = (decoder or self.decoder).decode(
                logits[None], torch.tensor([len(logits)]), self.seconds_per_frame, word_timestamps
            )
        return results  # type: ignore[return-value]

    def transcribe_batch(self, files: Sequence[str | Path], word_timestamps: bool = True) -> list[dict]:
        """``[{"file", "text", "confidence", "duration", "words": [{"word", "start", "end", "confidence"}]}]``,
        one per file, in the order given (files are batched by duration internally)."""
        waveforms = [load_audio(f, self.feature_extractor.sampling_rate)[0] for f in files]
        decoded = self.transcribe_arrays(waveforms, word_timestamps)
        sr = self.feature_extractor.sampling_rate
        return [
            {
                "file": str(f),
                "text": d.text,
                "confidence": round(d.confidence, 4),
                "duration": round(len(w) / sr, 3),
                "words": d.words,
            }
            for f, w, d in zip(files, waveforms, decoded)
        ]
