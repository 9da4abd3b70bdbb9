"""Export a run's scored conversations in the layouts other trainers read.

One row per scored rollout (``completed`` or ``truncated``); rollouts that ended in
``policy_error``, ``env_error`` or ``grader_error`` carry no score and are left out, never written
with reward 0. ``prompt`` is what the task showed the agent (system message, worked examples, the
task's prompt); ``completion`` is everything after it (assistant turns, tool results, simulated
user turns). An output ending in ``.jsonl`` is JSON Lines, anything else Parquet; both load with
``datasets.load_dataset("json" | "parquet", data_files=OUT)``.

Messages are ``{"role", "content", "tool_calls", "tool_call_id", "name"}`` (OpenAI chat format;
``tool_calls`` is ``[{"id", "type": "function", "function": {"name", "arguments"}}]`` with
``arguments`` as JSON text, or null).

``trl``: TRL's conversational prompt-completion layout, plus the reward:
    ``prompt`` (messages), ``completion`` (messages), ``label`` (bool: passed; TRL's unpaired
    preference layout, e.g. for KTO), ``reward`` (float in [0, 1]), ``task_id``, ``sample``.
``hf``: the Hugging Face chat layout, plus the reward:
    ``messages`` (the whole conversation), ``reward``, ``passed``, ``task_id``, ``sample``,
    ``outcome``.
``verl``: verl's RL parquet layout:
    ``data_source`` (``envfoundry/ENV``), ``prompt`` (``[{"role", "content"}]``), ``ability``
    (the environment name), ``reward_model`` (``{"style": "envfoundry", "ground_truth": TASK_ID}``:
    the task id is what an envfoundry-backed reward function needs to grade a response),
    ``extra_info`` (``split``, ``index``, ``task_id``, ``sample``, ``seed``, ``reward``,
    ``passed``, ``outcome``, ``env_version``, ``response`` (the final assistant text) and
    ``completion`` (the completion messages as JSON text)).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.outcome import Outcome
from .export_rows import check_output, json_text, own_rows, write_rows
from .store import RunManifest, RunStore

TRAINER_FORMATS = ("trl", "hf", "verl")


def _message(m: dict[str, Any]) -> dict[str, Any]:
    calls = m.get("tool_calls") or None
    if calls:
        calls = [
            {"id": str(c.get("id") or ""), "type": "function",
             "function": {"name": str(c.get("name") or ""),
                          "arguments": c["arguments"] if isinstance(c.get("arguments"), str)
                          else json_text(c.get("arguments") or {})}}
            for c in calls
        ]
    return {"role": m["role"], "content": m.get("content") or "", "tool_calls": calls,
            "tool_call_id": m.get("tool_call_id"), "name": m.get("name")}


def _prefix_lengths(manifest: RunManifest) -> dict[str, int] | None:
    """How many leading messages of each task's records are its prompt, from the environment."""
    try:
        from ..core.loading import load
        from .selection import select_tasks

        env = load(manifest.env_spec, manifest.env_args)
        tasks = select_tasks(env, manifest.split, limit=manifest.limit, task_seed=manifest.task_seed,
                             task_ids=manifest.task_ids, calibration=manifest.calibration)
    except Exception:  # noqa: BLE001 - the env may be gone; fall back to reading the messages
        return None
    return {t.id: len(env.prompt_messages(t)) for t in tasks}


def _guess_prefix(msgs: list[dict[str, Any]]) -> int:
    """Without the environment: the prompt ends before the first assistant message that calls a
    tool, else before the last assistant message."""
    for i, m in enumerate(msgs):
        if m["role"] == "assistant" and m.get("tool_calls"):
            return i
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i]["role"] == "assistant":
            return i
    return len(msgs)


def _rows(store: RunStore, fmt: str) -> Iterable[dict[str, Any]]:
    m = store.manifest
    prefixes = _prefix_lengths(m)
    index = 0

    def row(r: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal index
        if r["outcome"] in Outcome.ERRORS or r.get("score") is None:
            return None
        msgs = [_message(x) for x in r.get("messages") or []]
        n = prefixes.get(r["task_id"]) if prefixes else None
        if n is None:
            n = _guess_prefix(msgs)
        prompt, completion = msgs[:n], msgs[n:]
        reward, passed = float(r["score"]), bool(r["passed"])
        out: dict[str, Any]
        if fmt == "trl":
            out = {"prompt": prompt, "completion": completion, "label": passed, "reward": reward,
                   "task_id": r["task_id"], "sample": int(r["sample"])}
        elif fmt == "hf":
            out = {"messages": msgs, "reward": reward, "passed": passed, "task_id": r["task_id"],
                   "sample": int(r["sample"]), "outcome": r["outcome"]}
        else:
            final = next((x["content"] for x in reversed(completion) if x["role"] == "assistant"), "")
            out = {
                "data_source": f"envfoundry/{m.env}",
                "prompt": [{"role": x["role"], "content": x["content"]} for x in prompt],
                "ability": m.env,
                "reward_model": {"style": "envfoundry", "ground_truth": r["task_id"]},
                "extra_info": {
                    "split": r.get("split") or m.split, "index": index, "task_id": r["task_id"],
                    "sample": int(r["sample"]), "seed": int(r["seed"]), "reward": reward, "passed": passed,
                    "outcome": r["outcome"], "env_version": m.env_version, "response": final,
                    "completion": json_text(completion),
                },
            }
        index += 1
        return out

    return own_rows(store, row)


def _schema(fmt: str) -> Any:
    import pyarrow as pa

    call = pa.struct([("id", pa.string()), ("type", pa.string()),
                      ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())]))])
    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("tool_calls", pa.list_(call)),
                              ("tool_call_id", pa.string()), ("name", pa.string())]))
    if fmt == "trl":
        return pa.schema([("prompt", msg), ("completion", msg), ("label", pa.bool_()), ("reward", pa.float64()),
                          ("task_id", pa.string()), ("sample", pa.int64())])
    if fmt == "hf":
        return pa.schema([("messages", msg), ("reward", pa.float64()), ("passed", pa.bool_()),
                          ("task_id", pa.string()), ("sample", pa.int64()), ("outcome", pa.string())])
    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([
            ("split", pa.string()), ("index", pa.int64()), ("task_id", pa.string()), ("sample", pa.int64()),
            ("seed", pa.int64()), ("reward", pa.float64()), ("passed", pa.bool_()), ("outcome", pa.string()),
            ("env_version", pa.string()), ("response", pa.string()), ("completion", pa.string()),
        ])),
    ])


def export_for_trainer(run: str | Path | RunStore, fmt: str, out: str | Path) -> int:
    """Write the run's scored rollouts in ``fmt`` (trl, hf, verl) to ``out``; returns the row count."""
    if fmt not in TRAINER_FORMATS:
        raise UsageError(f"unknown trainer format {fmt!r} (choose from: {', '.join(TRAINER_FORMATS)})")
    store = run if isinstance(run, RunStore) else RunStore.open(run)
    outp = check_output(store.path, out, fmt)
    rows = list(_rows(store, fmt))
    jsonl = outp.suffix == ".jsonl"
    write_rows(rows, outp, jsonl=jsonl, schema=None if jsonl else _schema(fmt))
    return len(rows)
