"""The math grader: exactly one answer block holding exactly one integer."""

from __future__ import annotations

import re

from envfoundry import GradeInput, Score

ANSWER_FORMAT = "<answer>{answer}</answer>"
_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_INT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)", re.ASCII)
_MAX_CHARS = 40


def parse_answer(text: str) -> tuple[int | None, str]:
    """(value, why) where value is None when the text holds no single well-formed answer."""
    opens, closes = text.count("<answer>"), text.count("</answer>")
    if opens > 1 or closes > 1:  # counted before any regex: a lazy match per unclosed tag is quadratic
        return None, f"{max(opens, closes)} answer blocks; exactly one is accepted"
    blocks = _BLOCK.findall(text) if opens == closes == 1 else []
    if not blocks:
        return None, "no <answer>...</answer> block"
    inner = blocks[0].strip()
    if len(inner) > _MAX_CHARS:  # int() of thousands of digits raises; no answer here is that long
        return None, f"answer block holds {len(inner):,} characters, not a single integer"
    if not _INT.fullmatch(inner):
        shown = inner if len(inner) <= 40 else inner[:37] + "..."
        return None, f"answer block holds {shown!r}, not a single integer in ASCII digits"
    return int(inner.replace(",", "")), ""


def grade_answer(g: GradeInput) -> Score:
    gold = int(g.task.data["answer"])
    value, why = parse_answer(g.final)
    if value is None:
        return Score(0.0, {"format": 0.0, "correct": 0.0}, why)
    if value != gold:
        return Score(0.0, {"format": 1.0, "correct": 0.0}, f"answered {value}, expected {gold}")
    return Score(1.0, {"format": 1.0, "correct": 1.0}, f"answered {value}, correct")
