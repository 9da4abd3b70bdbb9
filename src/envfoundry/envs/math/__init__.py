"""``math``: procedural arithmetic and word problems with one strictly formatted final answer.

How the grader resists reward hacking: exactly one ``<answer>...</answer>`` block must appear and
it must hold one integer written with ASCII digits (optionally signed, optionally with thousands
commas); several blocks, several numbers in a block, an answer only "contained" in the text, or
look-alike digits all score 0, and the explanation says why.

Against the ``envfoundry audit`` probes: empty answers, refusals, success claims, judge-aimed
instructions, padding and 50k-character answers hold no well-formed integer block (0); answer spam
and echoed prompts put several numbers or blocks where one is required (0); the right answer in a
wrong form (outside the block, ``\boxed{}``, markdown, look-alike digits, hedged with a second
block) scores 0; guesses drawn from other tasks' answers rarely match (the audit measures it).
Hostile text cannot crash or stall the grader: tags are counted before any regex runs (thousands
of unclosed tags once made the lazy match quadratic) and a block of more than 40 characters is
refused before ``int()`` (5,000 digits once raised ``ValueError``, an unscored grader_error).
Domain mutations (:func:`audit_mutations`) check that ``+7`` and ``1,234`` keep full marks and
that a flipped sign or a dropped digit loses them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

from envfoundry import Environment, Episode, Message, ProceduralTasks, Task

from .generate import LEVELS, make_problem
from .grader import ANSWER_FORMAT, grade_answer

NAME = "math"
VERSION = "1.1.0"
SPLIT_SIZES = {"train": 20_000, "test": 2_000}
SPLIT_WEIGHTS = {"train": 4, "test": 1}  # share of the problem space each split owns

SYSTEM = """You solve arithmetic problems. Think briefly if you need to, then give the final answer \
as a single integer inside <answer></answer> tags, exactly once."""
#: worked examples, shown as earlier chat turns (SmolLM2-135M follows the format from these)
EXAMPLES = (
    ("What is 2 + 5?", "2 + 5 = 7. <answer>7</answer>"),
    ("Compute 12 - 4 + 3.", "12 - 4 = 8, 8 + 3 = 11. <answer>11</answer>"),
    ("Mia has 3 pens and buys 4 more. How many pens does she have?", "3 + 4 = 7. <answer>7</answer>"),
)


def audit_mutations(task: Task, actions: list[Message]) -> Iterator[tuple[str, list[Message], str]]:
    """Mutations of the reference answer for ``envfoundry audit``: spellings the format allows
    (a plus sign, thousands commas) must keep full marks; typical slips must lose them."""
    gold = int(task.data["answer"])

    def answering(text: str) -> list[Message]:
        return [*actions[:-1], Message("assistant", ANSWER_FORMAT.format(answer=text))]

    if gold > 0:
        yield "plus_sign", answering(f"+{gold}"), "equivalent"
    if abs(gold) >= 1000:
        yield "thousands_commas", answering(f"{gold:,}"), "equivalent"
    if gold != 0:
        yield "sign_flipped", answering(str(-gold)), "wrong"
    if abs(gold) >= 10:
        yield "digit_dropped", answering(str(gold)[:-1]), "wrong"


def make_env(levels: Sequence[int] | None = None) -> Environment:
    """The math environment; ``levels`` restricts the difficulty levels (1-6, default all;
    ``--env-arg levels=1,2``)."""
    lv = tuple(sorted(set(levels or LEVELS)))
    bad = [x for x in lv if x not in LEVELS]
    if bad:
        raise ValueError(f"math: unknown level(s) {bad}; levels are {sorted(LEVELS)}")

    def generate(rng: random.Random) -> tuple[str, Callable[[str], Task]]:
        p = make_problem(rng, lv)
        return p.key, lambda split: Task(
            split=split,
            system=SYSTEM,
            examples=EXAMPLES,
            prompt=p.question,
            data={"answer": p.answer},
            metadata={"difficulty": p.knobs["level"], **p.knobs},
        )

    def reference(ep: Episode) -> Message:
        return Message("assistant", ANSWER_FORMAT.format(answer=ep.task.data["answer"]))

    suffix = "" if lv == tuple(LEVELS) else f" (levels {','.join(map(str, lv))})"
    return Environment(
        name=NAME,
        version=VERSION,
        description="Arithmetic and word problems; one integer in <answer></answer>" + suffix,
        tasks=ProceduralTasks.source(generate, sizes=SPLIT_SIZES, weights=SPLIT_WEIGHTS),
        graders=[grade_answer],
        reference=reference,
        max_turns=1,
        answer_format=ANSWER_FORMAT,
        mutations=audit_mutations,
    )
