"""One vocabulary for every command: each shared option's flag, meaning and range, in one place.

A command takes a shared option as ``limit: Limit = None`` (the types below), so ``run``,
``check``, ``audit``, ``calibrate``, ``train`` and ``agree`` name the same thing the same way,
and every numeric option is checked against its documented range while the command line is
parsed, before any work starts: a value out of range is exit 2 naming the option. Old names
stay as hidden aliases for one release (:func:`renamed` prints the deprecation note).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._common import err

#: the largest GRPO group (rollouts per task) a command accepts
MAX_SAMPLES = 100_000
#: the largest tasks x samples of one command (each rollout is a record on disk)
MAX_INT64 = 2**63 - 1
#: integer options sent to model servers must fit the protocol's 32-bit fields (llama.cpp, vLLM)
MAX_INT32 = 2**31 - 1


def machine_cores() -> int:
    """CPU cores of this machine (``os.cpu_count()``), the bound of ``--threads``."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Range:
    """A numeric option's documented range: ``lo``/``hi`` bounds (inclusive unless ``open_lo``),
    finite always for floats; ``why`` names the limit when ``hi`` comes from the machine or a protocol."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    why: str = ""

    def check(self, flag: str, value: Any) -> Any:
        if value is None:
            return value
        if isinstance(value, float) and not math.isfinite(value):
            raise typer.BadParameter(f"{flag} must be a finite number, got {value}")
        if self.lo is not None and (value <= self.lo if self.open_lo else value < self.lo):
            raise typer.BadParameter(f"{flag} must be {'>' if self.open_lo else '>='} {_num(self.lo)}, got {value}")
        if self.hi is not None and value > self.hi:
            why = f" ({self.why})" if self.why else ""
            raise typer.BadParameter(f"{flag} must be <= {_num(self.hi)}{why}, got {value}")
        return value

    def text(self) -> str:
        lo = "" if self.lo is None else f"{'>' if self.open_lo else '>='} {_num(self.lo)}"
        hi = "" if self.hi is None else f"<= {_num(self.hi)}"
        return ", ".join(x for x in (lo, hi) if x) or "any finite number"


def _num(x: float) -> str:
    for bits in (63, 32, 31):
        if x == 2**bits - 1:
            return f"2^{bits}-1"
    return f"{int(x):,}" if float(x).is_integer() and abs(x) >= 10_000 else f"{x:g}"


#: the documented range of every numeric option (flag -> range); ``--threads`` is bounded by this machine
RANGES: dict[str, Range] = {
    "--limit": Range(1, None),
    "--eval-limit": Range(0, 1_000_000),
    "--samples": Range(1, MAX_SAMPLES, why="rollouts per task"),
    "--concurrency": Range(1, 100_000),
    "--workers": Range(1, 256),
    "--seed": Range(0, MAX_INT64, why="a 64-bit seed"),
    "--task-seed": Range(0, MAX_INT64, why="a 64-bit seed"),
    "--model-seed": Range(0, MAX_INT32, why="model servers take a 32-bit seed"),
    "--timeout": Range(0, 7 * 24 * 3600, open_lo=True, why="a week"),
    "--max-turns": Range(1, 100_000),
    "--temperature": Range(0, 100),
    "--top-p": Range(0, 1, open_lo=True),
    "--max-tokens": Range(1, MAX_INT32, why="model servers take a 32-bit count"),
    "--slots": Range(1, 64),
    "--budget": Range(1, None),
    "--steps": Range(1, 10_000_000),
    "--batch": Range(2, 1_000_000),
    "--lr": Range(0, 1, open_lo=True),
    "--beta": Range(0, 1_000),
    "--max-completion-tokens": Range(1, MAX_INT32),
    "--save-every": Range(1, 10_000_000),
    "--threads": Range(1, None),  # the upper bound is this machine's cores: see _threads
    # agree
    "--repeats": Range(1, 100, why="judge verdicts per item"),
    "--adversarial": Range(0, 100_000),
    "--pairs": Range(0, 100_000),
    "--boot": Range(1, 100_000, why="bootstrap resamples"),
    "--threshold": Range(None, None),  # finite; agree checks it against the scores' range
}


def _checked(flag: str, rng: Range | None = None):  # noqa: ANN202 - a click callback
    rng = rng or RANGES[flag]

    def callback(value: Any) -> Any:
        return rng.check(flag, value)

    return callback


def _threads(value: int | None) -> int | None:
    cores = machine_cores()
    if value is not None and value < 1:
        raise typer.BadParameter(f"--threads must be >= 1, got {value}")
    if value is not None and value > cores:
        raise typer.BadParameter(f"--threads must be <= {cores}, the cores of this machine, got {value}")
    return value


def _opt(flag: str, help: str, *aliases: str, rng: Range | None = None, **kw: Any) -> Any:  # noqa: A002
    """A typer option named ``flag`` whose value is checked against ``rng`` (default: its range in
    :data:`RANGES`) while the command line is read; the range is stated in the help."""
    rng = rng or RANGES.get(flag)
    if rng is not None:
        help = f"{help} (range: {rng.text()})"  # noqa: A001
        kw.setdefault("callback", _checked(flag, rng))
    return typer.Option(flag, *aliases, help=help, **kw)


def renamed(new_value: Any, old_value: Any, old: str, new: str) -> Any:
    """The value of an option given by its new or its old (hidden) name, with a deprecation note
    for the old one; both with different values is refused."""
    if old_value is None:
        return new_value
    err.print(f"note: {old} is now {new}; the old name goes away in the next release", soft_wrap=True)
    if new_value is not None and new_value != old_value:
        raise typer.BadParameter(f"give {new} once (got {new} {new_value} and {old} {old_value})")
    return old_value


# ----------------------------------------------------------------- what and where

Model = Annotated[Optional[str], _opt(
    "--model", "the policy: local (the embedded SmolLM2), local:PATH.gguf, openai:NAME, scripted:oracle|noop|random")]
BaseUrl = Annotated[Optional[str], _opt("--base-url", "OpenAI-compatible API root (…/v1)")]
ApiKeyEnv = Annotated[Optional[str], _opt("--api-key-env", "environment variable holding the API key (its name is "
                                          "stored, never the key)")]
Slots = Annotated[Optional[int], _opt("--slots", "llama.cpp server processes for --model local (default: one per "
                                      "core, at most 4; 1 for local:PATH.gguf)")]
Temperature = Annotated[Optional[float], _opt("--temperature", "sampling temperature")]
TopP = Annotated[Optional[float], _opt("--top-p", "nucleus sampling")]
MaxTokens = Annotated[Optional[int], _opt("--max-tokens", "tokens per model turn")]
ModelSeed = Annotated[Optional[int], _opt("--model-seed", "fixed sampling seed (default: per rollout)")]
ToolMode = Annotated[Optional[str], _opt("--tool-mode", "auto, native or text tool calling (default: auto)")]

# ----------------------------------------------------------------- which tasks, how many

Split = Annotated[Optional[str], _opt("--split", "task split (default: test)")]
Limit = Annotated[Optional[int], _opt("--limit", "the split's first N tasks (default: all)")]
Samples = Annotated[Optional[int], _opt("--samples", "rollouts per task, a GRPO group")]
Seed = Annotated[Optional[int], _opt("--seed", "run seed: tasks, rollouts (default: 0)")]
TaskSeed = Annotated[Optional[int], _opt("--task-seed", "task source seed (default: --seed)")]

# ----------------------------------------------------------------- how it runs

Concurrency = Annotated[Optional[int], _opt("--concurrency", "rollouts in flight at once (default: 32)")]
Workers = Annotated[int, _opt("--workers", "processes sharing the rollouts (for fast model servers); "
                              "concurrency is split among them")]
Backend = Annotated[str, _opt("--backend", "where rollouts run: local (this machine; --workers processes) or ray "
                              "(a Ray cluster: --ray-address; --workers actors, default one per CPU)")]
RayAddress = Annotated[Optional[str], _opt("--ray-address", "the Ray cluster of --backend ray: auto (RAY_ADDRESS, or "
                                           "a cluster started on this machine; default), local (a new one for this "
                                           "run), ray://HOST:PORT or HOST:PORT")]
Timeout = Annotated[Optional[float], _opt("--timeout", "seconds per rollout (default: none)")]
MaxTurns = Annotated[Optional[int], _opt("--max-turns", "lower the environment's turn limit")]
MaxErrors = Annotated[Optional[str], _opt(
    "--max-errors", "errored rollouts tolerated before the command fails (exit 1): a count (5), a share (0.05) or "
    "a percentage (5%) (default: 0)")]

# ----------------------------------------------------------------- output

Out = Annotated[Optional[Path], _opt("--out", "output folder (default: a new timestamped folder, printed)")]
Resume = Annotated[bool, typer.Option("--resume", metavar="", help="continue the work stored in --out")]
Force = Annotated[bool, typer.Option("--force", metavar="", help="replace what --out holds (an envfoundry output) "
                                     "instead of refusing")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", metavar="", help="no progress output")]
Json = Annotated[bool, typer.Option("--json", metavar="", help="machine-readable report on stdout")]

# ----------------------------------------------------------------- training

Threads = Annotated[Optional[int], typer.Option("--threads", callback=_threads,
                                                help="CPU threads for torch (default: all cores; range: 1 to this "
                                                "machine's cores)")]


def hidden(flag: str) -> Any:
    """A deprecated name kept for one release: accepted, not shown in ``--help``, and checked
    against the range of its new name (``--tasks -3`` is refused as ``--limit -3`` is)."""
    rng = RANGES.get(RENAMED.get(flag, ""))
    return typer.Option(flag, hidden=True, **({"callback": _checked(flag, rng)} if rng is not None else {}))


#: the names used before this vocabulary (old -> new), accepted for one release
RENAMED = {"--tasks": "--limit", "--group-size": "--samples", "--eval-tasks": "--eval-limit",
           "--max-turn-tokens": "--max-tokens"}
