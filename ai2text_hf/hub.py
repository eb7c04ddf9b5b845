"""Sharing models on the Hugging Face Hub: the model card, ``ai2text push`` and complete Trainer pushes.

Every write goes through transformers' shared client ``transformers.utils.hub.hf_api()``, the one the
Trainer's own pushes use, so one client (and one test stand-in) covers both. Reading back needs nothing
of ours: ``pipeline(model="org/name", trust_remote_code=True)`` or ``from_pretrained``; a folder with a
``language_model/`` registers the pipeline that decodes with it (``pipeline_ai2text.py``).

What is uploaded is decided once (:func:`push_plan`), after every check, so ``push --to-folder`` writes
exactly what a push would upload, and a folder missing a file the model needs is refused before anything is sent.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from huggingface_hub import CommitInfo, CommitOperationAdd, EvalResult, ModelCard, ModelCardData
from safetensors import safe_open
from transformers import AutoConfig, TrainerCallback
from transformers.dynamic_module_utils import custom_object_save, get_relative_import_files
from transformers.utils.hub import hf_api

from .configuration_ai2text import AI2TextConfig
from .evaluation.report import RESULTS_NAME, load_results
from .inference import require_model_folder
from .language_model_ai2text import ARPA_NAME, BINARY_NAME, LM_FOLDER, WORDS_NAME, language_model_file

CARD_NAME = "README.md"
# Written by training and (before evaluation results moved to the run folder) evaluation, for local use: the
# pickled TrainingArguments and the evaluation log, which older model folders still hold and cards still read.
LEGACY_EVALUATIONS_NAME = "evaluations.json"
LOCAL_ONLY = ("training_args.bin", LEGACY_EVALUATIONS_NAME)
# Files whose "auto_map" names the code files a trust_remote_code load imports.
AUTO_MAP_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")
FEATURE_EXTRACTOR_FILES = ("preprocessor_config.json", "processor_config.json")
TAGS = ["automatic-speech-recognition", "ctc", "vietnamese", "ai2text"]


class HubPushError(ConnectionError):
    """The Hub refused or could not be reached; the message says what to check."""


def _module_file(reference: str) -> str:
    """``"modeling_ai2text.AI2TextForCTC"`` (or ``"repo--modeling_ai2text.X"``) -> ``modeling_ai2text.py``."""
    return reference.split("--")[-1].split(".")[0] + ".py"


def _code_files(model_dir: Path) -> set[str]:
    """The ``.py`` files the folder's auto_maps and custom pipelines name, with the files they import relatively."""
    modules: set[str] = set()
    for name in AUTO_MAP_FILES:
        if (model_dir / name).is_file():
            auto_map = json.loads((model_dir / name).read_text(encoding="utf-8")).get("auto_map", {})
            for value in auto_map.values():
                modules |= {_module_file(r) for r in (value if isinstance(value, list) else [value]) if r}
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    modules |= {_module_file(task["impl"]) for task in (config.get("custom_pipelines") or {}).values()}
    missing = sorted(m for m in modules if not (model_dir / m).is_file())
    if missing:
        raise FileNotFoundError(
            f"{model_dir} names code files it does not contain: {', '.join(missing)}. Re-save the model with "
            "save_pretrained after `import ai2text_hf` (which registers the code for auto_map)"
            + (", and store its LM again (ai2text lm build --model)." if (model_dir / LM_FOLDER).is_dir() else ".")
        )
    files = set(modules)
    for module in modules:
        files |= {Path(f).name for f in get_relative_import_files(str(model_dir / module))}
    return files


def _check_language_model(model_dir: Path) -> None:
    lm_dir = model_dir / LM_FOLDER
    if not lm_dir.is_dir():
        return
    if language_model_file(lm_dir) is None:
        raise FileNotFoundError(
            f"{lm_dir} has neither {ARPA_NAME} nor {BINARY_NAME} with {WORDS_NAME}: build the LM again with "
            "`ai2text lm build --model`."
        )
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if "automatic-speech-recognition" not in (config.get("custom_pipelines") or {}):
        raise FileNotFoundError(
            f"{model_dir} has a {LM_FOLDER}/ but its config.json registers no pipeline that decodes with it, so a "
            f"pipeline() user would decode greedily: store the LM with `ai2text lm build --model {model_dir}` or "
            f"`ai2text lm tune --model {model_dir}`."
        )


def hub_files(model_dir: str | Path) -> list[Path]:
    """The files of ``model_dir`` that belong on the Hub (subfolders such as ``language_model/`` included, as paths
    relative to ``model_dir``), after checking the folder has every file the model needs."""
    model_dir = Path(model_dir)
    require_model_folder(model_dir)
    if not list(model_dir.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{model_dir} has no safetensors weights. Load the model and save it again with save_pretrained()."
        )
    for needed in ("tokenizer_config.json", "vocab.json"):
        if not (model_dir / needed).is_file():
            raise FileNotFoundError(f"{model_dir} has no {needed}: save the processor into it (save_pretrained).")
    if not any((model_dir / name).is_file() for name in FEATURE_EXTRACTOR_FILES):
        raise FileNotFoundError(
            f"{model_dir} has no feature extractor settings ({' or '.join(FEATURE_EXTRACTOR_FILES)}): save the "
            "processor into it (save_pretrained)."
        )
    _code_files(model_dir)
    _check_language_model(model_dir)
    files = [p.relative_to(model_dir) for p in model_dir.rglob("*") if p.is_file()]
    # With its KenLM binary the ARPA text stays local: decoders load the binary, a fraction of the size.
    arpa = (
        Path(LM_FOLDER, ARPA_NAME)
        if language_model_file(model_dir / LM_FOLDER) == model_dir / LM_FOLDER / BINARY_NAME
        else None
    )
    return sorted(
        f
        for f in files
        if not (len(f.parts) == 1 and f.name in LOCAL_ONLY + (CARD_NAME,))
        and f != arpa
        and "__pycache__" not in f.parts
        and not any(part.startswith(".") for part in f.parts)
    )


def _parameters(model_dir: Path) -> int:
    total = 0
    for weights in model_dir.glob("*.safetensors"):
        with safe_open(str(weights), framework="numpy") as handle:
            for key in handle.keys():
                shape = handle.get_slice(key).get_shape()
                count = 1
                for size in shape:
                    count *= size
                total += count
    return total


def _decoding_name(decoding: dict) -> str:
    if decoding.get("method") != "beam":
        return "greedy"
    return f"beam {decoding.get('beam_width')}" + (" + LM" if decoding.get("lm") else "")


@dataclass
class CardEvaluation:
    """One evaluation as the card shows it (metrics as fractions)."""

    dataset: str
    split: str
    wer: float
    cer: float
    num_samples: int
    decoding: dict
    date: str = ""

    @classmethod
    def from_results(cls, results: dict) -> CardEvaluation:
        """From an ``eval_results.json`` or an entry of an old model folder's ``evaluations.json``."""
        dataset = results["data_version"]["name"] if "data_version" in results else results["dataset"]
        return cls(
            dataset=dataset,
            split=results["split"],
            wer=results["wer"],
            cer=results["cer"],
            num_samples=results["num_samples"],
            decoding=results.get("decoding", {"method": "greedy"}),
            date=results.get("date", ""),
        )

    @property
    def decoded_with(self) -> str:
        return _decoding_name(self.decoding)


def run_evaluations(model_dir: str | Path) -> list[CardEvaluation]:
    """The model's own test-split evaluations for its card: for ``runs/<name>/model``, the latest greedy one and the
    latest one with an LM among ``runs/<name>/eval/*/eval_results.json`` (else an old folder's evaluations.json).

    Raises ValueError when they cover several datasets: which one the card reports is then the user's choice."""
    model_dir = Path(model_dir)
    results = []
    if model_dir.name == "model":
        results = [load_results(p) for p in sorted((model_dir.parent / "eval").glob(f"*/{RESULTS_NAME}"))]
    if not results and (model_dir / LEGACY_EVALUATIONS_NAME).is_file():
        results = json.loads((model_dir / LEGACY_EVALUATIONS_NAME).read_text(encoding="utf-8"))
    tests = [CardEvaluation.from_results(r) for r in results if r.get("split") == "test"]
    datasets = sorted({e.dataset for e in tests})
    if len(datasets) > 1:
        raise ValueError(
            f"The test-split evaluations of {model_dir} cover several datasets ({', '.join(datasets)}): name the "
            "ones the card should report with --evaluation runs/<name>/eval/<folder> (repeatable)."
        )
    chosen = {}
    for evaluation in sorted(tests, key=lambda e: e.date):  # the latest of each kind wins
        chosen["lm" if evaluation.decoding.get("lm") else "greedy"] = evaluation
    return [chosen[kind] for kind in ("greedy", "lm") if kind in chosen]


@dataclass
class CardInfo:
    """What the card says beyond the model itself.

    Args:
        evaluations: the results ``model-index`` reports, each saying how it decoded.
        dataset_name: the Hub dataset id (or name) the evaluations' dataset is known by; local folder names are
            not listed under ``datasets:``.
        base_model: the Hub id of the model this one was fine-tuned from.
        fine_tuned_from: where training started when it is no Hub id (a local folder), shown in the text only.
        recipe: the training recipe (YAML text).
        license: the card's license.
    """

    evaluations: list[CardEvaluation]
    dataset_name: str | None = None
    base_model: str | None = None
    fine_tuned_from: str | None = None
    recipe: str | None = None
    license: str = "apache-2.0"


def _describe_model(config, parameters: int | None) -> str:
    size = f"{parameters / 1e6:.1f} M parameters, " if parameters else ""
    if not isinstance(config, AI2TextConfig):
        kind = type(config).__name__.removesuffix("Config")
        return f"Vietnamese speech-to-text: a {kind} CTC model" + (f" ({size[:-2]})." if size else ".")
    return (
        f"Vietnamese speech-to-text: a {config.block_type.capitalize()}-CTC model ({size}{config.num_encoder_layers} "
        f"blocks of width {config.d_model}, {config.n_mels} log-mel bins"
        f"{' and pitch (voicing, log-F0, its slope)' if config.num_pitch_features else ''} "
        f"at {config.sample_rate} Hz, {config.subsampling_factor}x time subsampling) predicting characters, "
        "trained with ai2text-hf and the Hugging Face Trainer."
    )


def build_model_card(
    repo_id: str, config, info: CardInfo | None = None, parameters: int | None = None, language_model: bool = False
) -> ModelCard:
    """A model card: YAML metadata (``model-index`` from ``info.evaluations``, each result named with its decoding,
    ``base_model``, ``datasets``) and a usage/results/recipe body. The card shows percentages, as the Hub's
    model-index convention for WER/CER is."""
    info = info or CardInfo(evaluations=[])
    eval_results = [
        EvalResult(
            task_type="automatic-speech-recognition",
            task_name="Speech Recognition",
            dataset_type=info.dataset_name or e.dataset,
            dataset_name=info.dataset_name or e.dataset,
            dataset_split=e.split,
            metric_type=metric,
            metric_value=round(100 * getattr(e, metric), 2),
            metric_name=f"{e.split.capitalize()} {metric.upper()} ({e.decoded_with})",
        )
        for e in info.evaluations
        for metric in ("wer", "cer")
    ]
    name = repo_id.split("/")[-1]
    data = ModelCardData(
        language="vi",
        license=info.license,
        library_name="transformers",
        pipeline_tag="automatic-speech-recognition",
        tags=TAGS + ([config.block_type] if isinstance(config, AI2TextConfig) else [config.model_type]),
        base_model=info.base_model,
        datasets=[info.dataset_name] if info.dataset_name else None,
        metrics=["wer", "cer"],
        model_name=name,
        eval_results=eval_results or None,
    )
    decodes = (
        "by beam search with the n-gram language model in `language_model/` (`use_lm=False`: greedily)"
        if language_model
        else "greedily (best path)"
    )
    lines = [f"# {name}", "", _describe_model(config, parameters)]
    if info.base_model or info.fine_tuned_from:
        lines += ["", f"Fine-tuned from {info.base_model or info.fine_tuned_from}."]
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "# pip install transformers torch torchaudio soundfile" + (" flashlight-text" if language_model else ""),
        "from transformers import pipeline",
        "",
        f'asr = pipeline("automatic-speech-recognition", model="{repo_id}", trust_remote_code=True)',
        'print(asr("speech.wav")["text"])                            # any sample rate (decoded by ffmpeg)',
        'print(asr("long.wav", chunk_length_s=20)["text"])            # long audio in chunks',
        'print(asr("speech.wav", return_timestamps="word")["chunks"]) # word timings',
        "```",
        "",
        f"The pipeline decodes {decodes}. With `pip install ai2text-hf`, `ai2text transcribe --model` and "
        "`Transcriber` do the same and add confidences and hotwords.",
        "",
        "## Evaluation",
        "",
    ]
    if info.evaluations:
        lines += [
            "WER counts Vietnamese syllables (space-separated words); both rates are on normalised text, in %.",
            "",
            "| dataset | split | decoding | WER | CER | utterances | date |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {info.dataset_name or e.dataset} | {e.split} | {e.decoded_with} | {100 * e.wer:.2f} | "
            f"{100 * e.cer:.2f} | {e.num_samples} | {e.date[:10]} |"
            for e in info.evaluations
        ]
    else:
        lines.append("Not evaluated yet (`ai2text evaluate` on the test split records results the next push shows).")
    if info.recipe:
        lines += ["", "## Training recipe", "", "```yaml", info.recipe.strip(), "```"]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def _base_model(init_from: str | None) -> tuple[str | None, str | None]:
    """``(base_model, fine_tuned_from)``: a Hub id goes in the metadata, a local folder only in the text."""
    if not init_from:
        return None, None
    return (None, init_from) if Path(init_from).exists() else (init_from, None)


def card_info_for_folder(
    model_dir: str | Path,
    evaluations: list[str | Path] | None = None,
    dataset_name: str | None = None,
    base_model: str | None = None,
    license: str = "apache-2.0",
) -> CardInfo:
    """The card's facts for a model folder: the named ``evaluations`` (eval folders or ``eval_results.json``
    files) or else the run's own test-split ones, and for ``runs/<name>/model`` the run's recipe and its
    ``init_from`` (``base_model`` given here wins)."""
    model_dir = Path(model_dir)
    recipe_path = model_dir.parent / "recipe.yaml"
    recipe = recipe_path.read_text(encoding="utf-8") if model_dir.name == "model" and recipe_path.is_file() else None
    init_from = (yaml.safe_load(recipe) or {}).get("init_from") if recipe else None
    hub_base, local_base = _base_model(init_from)
    chosen = (
        [CardEvaluation.from_results(load_results(e)) for e in evaluations]
        if evaluations
        else run_evaluations(model_dir)
    )
    return CardInfo(
        evaluations=chosen,
        dataset_name=dataset_name,
        base_model=base_model or hub_base,
        fine_tuned_from=None if base_model else local_base,
        recipe=recipe,
        license=license,
    )


@dataclass
class PushPlan:
    """Exactly what a push uploads: the folder's files (paths relative to it) and the generated card."""

    model_dir: Path
    files: list[Path]
    card: ModelCard

    def write_to(self, folder: str | Path) -> Path:
        """Write the upload into ``folder`` (a new or empty folder) instead of sending it: a dry run to inspect."""
        folder = Path(folder)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise FileExistsError(f"{folder} exists and is not an empty folder: choose a new folder for --to-folder.")
        for relative in self.files:
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.model_dir / relative, folder / relative)
        (folder / CARD_NAME).write_text(str(self.card), encoding="utf-8")
        return folder


def push_plan(model_dir: str | Path, repo_id: str, info: CardInfo | None = None) -> PushPlan:
    """Check ``model_dir`` and decide what pushing it to ``repo_id`` uploads (``info``: the card's facts, by default
    from :func:`card_info_for_folder`)."""
    model_dir = Path(model_dir)
    files = hub_files(model_dir)
    info = info or card_info_for_folder(model_dir)
    language_model = language_model_file(model_dir / LM_FOLDER) is not None
    config = AutoConfig.from_pretrained(str(model_dir))
    card = build_model_card(repo_id, config, info, _parameters(model_dir), language_model)
    return PushPlan(model_dir, files, card)


def push_model(
    model_dir: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    info: CardInfo | None = None,
) -> CommitInfo:
    """Upload a complete model folder (with its subfolders) and its generated card to ``repo_id`` in one commit.

    The repository is created when missing, and branch ``revision`` from main when it is not main.
    """
    plan = push_plan(model_dir, repo_id, info)
    operations = [
        CommitOperationAdd(path_in_repo=f.as_posix(), path_or_fileobj=str(plan.model_dir / f)) for f in plan.files
    ]
    operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=str(plan.card).encode("utf-8")))
    api = hf_api()
    try:
        api.create_repo(repo_id, token=token, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
        return api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Upload {plan.model_dir}",
            token=token,
            revision=revision,
        )
    except Exception as error:  # network, offline mode, authentication, permission: the client's many types
        raise HubPushError(
            f"Pushing {plan.model_dir} to {repo_id} failed: {error}\nCheck the network, that HF_HUB_OFFLINE is unset, "
            f"and that the token (--token, HF_TOKEN or `hf auth login`) may write to {repo_id}."
        ) from error


class CompleteHubPushCallback(TrainerCallback):
    """Makes the Trainer's pushes during training (``hub_strategy`` every_save/checkpoint) complete folders.

    ``Trainer._push_from_checkpoint`` copies only the config and weights from the checkpoint into
    ``output_dir`` before uploading it (transformers#29714): the pushed config's auto_map then names
    modeling code the repository lacks, and ``trust_remote_code`` loading fails. Before each push this
    writes the code files ``save_pretrained`` would write and a model card with the recipe; the Trainer
    itself adds the processor files.
    """

    def __init__(self, recipe: str | Path | None = None, license: str = "apache-2.0"):
        self.recipe = Path(recipe) if recipe else None
        self.license = license

    def on_push_begin(self, args, state, control, model=None, **kwargs):
        output_dir = Path(args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        custom_object_save(model, output_dir, config=model.config)
        repo_id = args.hub_model_id or output_dir.absolute().name
        recipe = self.recipe.read_text(encoding="utf-8") if self.recipe and self.recipe.is_file() else None
        parameters = sum(p.numel() for p in model.parameters())
        info = CardInfo(evaluations=[], recipe=recipe, license=self.license)
        card = build_model_card(repo_id, model.config, info, parameters)
        card.save(output_dir / CARD_NAME)
