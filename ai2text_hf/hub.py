"""Sharing models on the Hugging Face Hub: the model card, ``ai2text push`` and complete Trainer pushes.

Every write goes through transformers' shared client ``transformers.utils.hub.hf_api()``, the one the
Trainer's own pushes use, so one client (and one test stand-in) covers both. Reading back needs nothing
of ours: ``pipeline(model="org/name", trust_remote_code=True)`` or ``from_pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, EvalResult, ModelCard, ModelCardData
from safetensors import safe_open
from transformers import TrainerCallback
from transformers.dynamic_module_utils import custom_object_save, get_relative_import_files
from transformers.utils.hub import hf_api

from .configuration_ai2text import AI2TextConfig

CARD_NAME = "README.md"
# Written by training and evaluation for local use: the pickled TrainingArguments and the evaluation
# log (it holds local paths; the card carries its numbers).
LOCAL_ONLY = ("training_args.bin", "evaluations.json")
# Files whose "auto_map" names the code files a trust_remote_code load imports.
AUTO_MAP_FILES = ("config.json", "tokenizer_config.json", "processor_config.json", "preprocessor_config.json")
TAGS = ["automatic-speech-recognition", "ctc", "vietnamese", "ai2text"]


class HubPushError(ConnectionError):
    """The Hub refused or could not be reached; the message says what to check."""


def _code_files(model_dir: Path) -> set[str]:
    """The ``.py`` files the folder's auto_maps name, with the files they import relatively."""
    modules: set[str] = set()
    for name in AUTO_MAP_FILES:
        if (model_dir / name).is_file():
            auto_map = json.loads((model_dir / name).read_text(encoding="utf-8")).get("auto_map", {})
            for value in auto_map.values():
                for reference in value if isinstance(value, list) else [value]:
                    if reference:
                        modules.add(reference.split("--")[-1].split(".")[0] + ".py")
    missing = sorted(m for m in modules if not (model_dir / m).is_file())
    if missing:
        raise FileNotFoundError(
            f"{model_dir} names code files it does not contain: {', '.join(missing)}. Re-save the model with "
            "save_pretrained after `import ai2text_hf` (which registers the code for auto_map)."
        )
    files = set(modules)
    for module in modules:
        files |= {Path(f).name for f in get_relative_import_files(str(model_dir / module))}
    return files


def hub_files(model_dir: str | Path) -> list[Path]:
    """The files of ``model_dir`` that belong on the Hub, after checking the folder is complete."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a model folder (no config.json): point --model at runs/<name>/model."
        )
    if not list(model_dir.glob("*.safetensors")):
        raise FileNotFoundError(
            f"{model_dir} has no safetensors weights. Load the model and save it again with save_pretrained()."
        )
    for needed in ("tokenizer_config.json", "vocab.json"):
        if not (model_dir / needed).is_file():
            raise FileNotFoundError(f"{model_dir} has no {needed}: save the processor into it (save_pretrained).")
    _code_files(model_dir)
    return sorted(p for p in model_dir.iterdir() if p.is_file() and p.name not in LOCAL_ONLY and p.name != CARD_NAME)


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


def build_model_card(
    repo_id: str,
    config: AI2TextConfig,
    evaluations: list[dict] | None = None,
    recipe: str | None = None,
    parameters: int | None = None,
    license: str = "apache-2.0",
) -> ModelCard:
    """A model card: YAML metadata (``model-index`` from the last evaluation) and a usage/results/recipe body.

    ``evaluations`` are the entries of a model folder's ``evaluations.json`` (oldest first, metrics as
    fractions); the card shows percentages, as the Hub's model-index convention for WER/CER is.
    """
    evaluations = evaluations or []
    last = evaluations[-1] if evaluations else None
    eval_results = []
    if last:
        for metric in ("wer", "cer"):
            eval_results.append(
                EvalResult(
                    task_type="automatic-speech-recognition",
                    task_name="Speech Recognition",
                    dataset_type=last["dataset"],
                    dataset_name=last["dataset"],
                    dataset_split=last["split"],
                    metric_type=metric,
                    metric_value=round(100 * last[metric], 2),
                    metric_name=f"{last['split'].capitalize()} {metric.upper()} ({_decoding_name(last['decoding'])})",
                )
            )
    name = repo_id.split("/")[-1]
    data = ModelCardData(
        language="vi",
        license=license,
        library_name="transformers",
        pipeline_tag="automatic-speech-recognition",
        tags=TAGS + [config.block_type],
        datasets=sorted({e["dataset"] for e in evaluations}) or None,
        metrics=["wer", "cer"],
        model_name=name,
        eval_results=eval_results or None,
    )
    size = f"{parameters / 1e6:.1f} M parameters, " if parameters else ""
    lines = [
        f"# {name}",
        "",
        f"Vietnamese speech-to-text: a {config.block_type.capitalize()}-CTC model ({size}{config.num_encoder_layers} "
        f"blocks of width {config.d_model}, {config.n_mels} log-mel bins"
        f"{' and pitch (voicing, log-F0, its slope)' if config.num_pitch_features else ''} "
        f"at {config.sample_rate} Hz, "
        f"{config.subsampling_factor}x time subsampling) predicting characters, trained with ai2text-hf and "
        "the Hugging Face Trainer.",
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'asr = pipeline("automatic-speech-recognition", model="{repo_id}", trust_remote_code=True)',
        'print(asr("speech.wav")["text"])                            # any sample rate (decoded by ffmpeg)',
        'print(asr("long.wav", chunk_length_s=20)["text"])            # long audio in chunks',
        'print(asr("speech.wav", return_timestamps="word")["chunks"]) # word timings',
        "```",
        "",
        "With `pip install ai2text-hf`, `import ai2text_hf` registers the classes and `trust_remote_code` is "
        "not needed.",
        "",
        "## Evaluation",
        "",
    ]
    if evaluations:
        lines += [
            "WER counts Vietnamese syllables (space-separated words); both rates are on normalised text, in %.",
            "",
            "| date | dataset | split | decoding | WER | CER | utterances |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {e['date'][:10]} | {e['dataset']} | {e['split']} | {_decoding_name(e['decoding'])} | "
            f"{100 * e['wer']:.2f} | {100 * e['cer']:.2f} | {e['num_samples']} |"
            for e in evaluations
        ]
    else:
        lines.append("Not evaluated yet (`ai2text evaluate` records results that the next push shows here).")
    if recipe:
        lines += ["", "## Training recipe", "", "```yaml", recipe.strip(), "```"]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def model_card_for_folder(model_dir: str | Path, repo_id: str, license: str = "apache-2.0") -> ModelCard:
    """The card of a model folder from its ``evaluations.json`` and, for ``runs/<name>/model``, the run's recipe."""
    model_dir = Path(model_dir)
    history = model_dir / "evaluations.json"
    recipe = model_dir.parent / "recipe.yaml"
    return build_model_card(
        repo_id,
        AI2TextConfig.from_pretrained(str(model_dir)),
        evaluations=json.loads(history.read_text(encoding="utf-8")) if history.is_file() else None,
        recipe=recipe.read_text(encoding="utf-8") if recipe.is_file() else None,
        parameters=_parameters(model_dir),
        license=license,
    )


def push_model(
    model_dir: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    license: str = "apache-2.0",
    token: str | None = None,
    commit_message: str | None = None,
) -> CommitInfo:
    """Upload a complete model folder and its generated card to ``repo_id`` in one commit.

    The repository is created when missing, and branch ``revision`` from main when it is not main.
    """
    model_dir = Path(model_dir)
    files = hub_files(model_dir)
    card = model_card_for_folder(model_dir, repo_id, license)
    operations = [CommitOperationAdd(path_in_repo=f.name, path_or_fileobj=str(f)) for f in files]
    operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=str(card).encode("utf-8")))
    api = hf_api()
    try:
        api.create_repo(repo_id, token=token, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
        return api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message or f"Upload {model_dir}",
            token=token,
            revision=revision,
        )
    except Exception as error:  # network, offline mode, authentication, permission: the client's many types
        raise HubPushError(
            f"Pushing {model_dir} to {repo_id} failed: {error}\nCheck the network, that HF_HUB_OFFLINE is unset, "
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
        card = build_model_card(repo_id, model.config, recipe=recipe, parameters=parameters, license=self.license)
        card.save(output_dir / CARD_NAME)

