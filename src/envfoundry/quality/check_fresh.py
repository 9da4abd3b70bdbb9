"""The fresh-process half of ``determinism``: one child process loads the environment again and
regenerates the sampled tasks at least a second after this process generated them, with the
clock in a time zone where it is another day and with another string-hash seed. Tasks must be a
pure function of (split, seed): a timestamp in a prompt (at second resolution or a date), set or
dict order that depends on string hashing, or state left in a module all show up as a difference.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..core.env import Environment
from ..core.task import Task
from ..policies.scripted import RandomPolicy
from ..rollout.engine import RolloutConfig, run_rollout
from .check_base import CheckResult, of

LATER_S = 1.05  # the child regenerates the tasks at least this long after the parent did
_CHILD = ("import sys; from envfoundry.quality.check_fresh import child_main; child_main(sys.argv[1])")


def other_day_tz(now: float | None = None) -> str:
    """A POSIX ``TZ`` in which the local date differs from this machine's (about an hour past
    midnight of the next day, or an hour before midnight of the previous one)."""
    lt = time.localtime(now)
    off, into_day = lt.tm_gmtoff, lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec
    ahead = off + 86_400 - into_day + 3600
    new = ahead if ahead <= 86_400 else off - into_day - 3600
    a = abs(new)
    return f"EFC{'-' if new >= 0 else '+'}{a // 3600:02d}:{a % 3600 // 60:02d}:{a % 60:02d}"  # POSIX: sign flipped


def task_fingerprint(env: Environment, tasks: Sequence[Task], seed: int) -> dict[str, Any]:
    """Ids, texts and one scripted:random rollout of each task (score, outcome, messages' hash)."""
    cfg = RolloutConfig(samples=1, seed=seed)

    async def go() -> list[dict[str, Any]]:
        return [await run_rollout(env, t, 0, RandomPolicy(), cfg) for t in tasks]

    recs = asyncio.run(go())
    return {
        "ids": [t.id for t in tasks],
        "texts": [f"{t.system}\n{t.prompt}" if t.system else t.prompt for t in tasks],
        "rollouts": [[r["score"], r["outcome"], hashlib.sha256(json.dumps(
            r["messages"], sort_keys=True, default=str).encode()).hexdigest()[:16]] for r in recs],
    }


def child_main(payload: str) -> None:
    """Entry point of the child process: load, wait until ``not_before``, regenerate, print JSON."""
    from ..core.loading import load

    p = json.loads(payload)
    env = load(p["spec"], p["args"] or None)
    wait = p["not_before"] - time.time()
    if wait > 0:
        time.sleep(wait)
    tasks = list(env.tasks(p["split"], seed=p["seed"])[: p["n"]])
    print(json.dumps(task_fingerprint(env, tasks, p["seed"])))


def start_child(spec: str, args: dict[str, str], split: str, n: int, seed: int,
                generated_at: float) -> subprocess.Popen[str]:
    payload = json.dumps({"spec": spec, "args": args, "split": split, "n": n, "seed": seed,
                          "not_before": generated_at + LATER_S})
    env = {**os.environ, "TZ": other_day_tz(generated_at), "PYTHONHASHSEED": "random"}
    return subprocess.Popen([sys.executable, "-c", _CHILD, payload], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _around(a: str, b: str) -> dict[str, str]:
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    lo = max(0, i - 40)
    return {"this_process": a[lo:i + 40], "fresh_process": b[lo:i + 40]}


def compare_child(proc: subprocess.Popen[str], here: dict[str, Any], timeout_s: float = 300) -> CheckResult | None:
    """None when the child agrees with ``here``; else the failure."""
    name = "determinism"
    try:
        out, errs = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return CheckResult(name, "fail", f"a fresh process did not regenerate the tasks within {timeout_s:.0f}s")
    if proc.returncode != 0 or not out.strip():
        return CheckResult(name, "fail", f"a fresh process could not load the environment: {errs.strip()[-400:]}")
    child = json.loads(out.strip().splitlines()[-1])
    ids, n = here["ids"], len(here["ids"])
    why = ("the fresh process ran at least a second later, its clock in a time zone where it is another day, with "
           "another string-hash seed: a timestamp, set or dict order, or module state?")
    if child["ids"] != ids:
        bad = [k for k in range(n) if k >= len(child["ids"]) or child["ids"][k] != ids[k]]
        k = bad[0]
        example = _around(here["texts"][k], child["texts"][k]) if k < len(child["texts"]) else None
        differs = example is not None and example["this_process"] != example["fresh_process"]
        what = "prompts differ" if differs else "content differs"
        return CheckResult(name, "fail", f"{of(len(bad), n, 'tasks')} came out different in a fresh process "
                           f"({what}; {why})", ids[k], example)
    bad = [k for k in range(n) if child["rollouts"][k] != here["rollouts"][k]]
    if bad:
        k = bad[0]
        return CheckResult(name, "fail", f"scripted:random rollouts of {of(len(bad), n, 'tasks')} ended differently "
                           f"in a fresh process ({why})", ids[k],
                           {"this_process": here["rollouts"][k][:2], "fresh_process": child["rollouts"][k][:2]})
    return None
