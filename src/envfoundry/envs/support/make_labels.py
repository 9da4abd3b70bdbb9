"""Regenerate the shipped labelled set ``data/items.jsonl`` + ``data/labels.jsonl``.

Labels come from the environment's ground truth, by construction: scripted agents of varying
correctness (:data:`.reference.VARIANTS`: the oracle and one deliberate mistake each) handle test
tickets with the scripted customer, and the state + trace grader (no judge) labels each
transcript: ``label`` 1 when it passed, with per-rubric-item truth (``verified``, ``confirmed``,
``policy_outcome``) from the trace rules and the state layer. Per ticket: the oracle, one flawed
agent whose mistake matters there (it fails), and one other flawed agent at random (its mistake
may not matter: refusing without confirmation is fine), so about half the transcripts pass.
Two synthetic annotators copy the ground truth with a documented share of labels flipped at
random (seeded), to show inter-annotator agreement: ``noisy_10`` (10%) and ``noisy_25`` (25%).

    python -m envfoundry.envs.support.make_labels [--tasks 14] [--per-task 3] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from pathlib import Path
from typing import Any

from envfoundry import derive_seed

from . import make_env
from .reference import VARIANTS, ScriptedAgent

DATA = Path(__file__).parent / "data"
ANNOTATORS = {"noisy_10": 0.10, "noisy_25": 0.25}


async def _episode(env: Any, task: Any, agent: ScriptedAgent, seed: int) -> Any:
    ep = env.reset(task, seed=seed)
    while not (ep.terminated or ep.truncated):
        ep.step((await agent.act(ep)).action)
        if ep.turns >= env.max_turns:
            ep.truncated = True
    return ep


def build(n_tasks: int = 14, per_task: int = 3, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(items, labels): ``per_task`` transcripts for each of ``n_tasks`` test tickets (the oracle plus
    distinct flawed agents chosen at random)."""
    env = make_env()
    rng = random.Random(derive_seed(seed, "make-labels"))
    items: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    for task in env.tasks("test", seed=seed)[:n_tasks]:
        runs = {}
        for v in VARIANTS:
            ep = asyncio.run(_episode(env, task, ScriptedAgent(v), derive_seed(seed, task.id, v)))
            runs[v] = (ep, env.grade(ep))
        flawed = list(VARIANTS[1:])
        rng.shuffle(flawed)
        failing = [v for v in flawed if not runs[v][1].passed]
        chosen = ["oracle", *failing[:1]]
        chosen += [v for v in flawed if v not in chosen][: per_task - len(chosen)]
        for v in chosen:
            ep, score = runs[v]
            rules = score.breakdown["trace"]["rules"]
            truth = {"verified": rules["verified_before_write"]["ok"],
                     "confirmed": rules["confirmed_before_irreversible"]["ok"],
                     "policy_outcome": bool(score.breakdown["state"]["passed"]) and rules["no_forbidden_write"]["ok"]}
            iid = f"{task.id[:10]}-{v}"
            items.append({"id": iid, "task_id": task.id, "agent": v,
                          "metadata": {k: task.metadata[k] for k in ("persona", "request", "outcome", "clauses")},
                          "messages": [m.to_dict() for m in ep.messages]})
            label = int(bool(score.passed))
            labels.append({"id": iid, "label": label, "annotator": "ground_truth", "rubric": truth,
                           "score": score.value, "explanation": score.explanation[:300]})
            for name, p in ANNOTATORS.items():
                flip = random.Random(derive_seed(seed, name, iid)).random() < p
                labels.append({"id": iid, "label": 1 - label if flip else label, "annotator": name})
    return items, labels


def write(items: list[dict[str, Any]], labels: list[dict[str, Any]], out: Path = DATA) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("items.jsonl", items), ("labels.jsonl", labels)):
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=14)
    ap.add_argument("--per-task", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DATA)
    a = ap.parse_args(argv)
    items, labels = build(a.tasks, a.per_task, a.seed)
    write(items, labels, a.out)
    pos = sum(r["label"] for r in labels if r["annotator"] == "ground_truth")
    print(f"wrote {len(items)} items ({pos} labelled pass) and {len(labels)} labels to {a.out}")


if __name__ == "__main__":
    main()
