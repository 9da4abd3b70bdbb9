"""Graders that turn a finished episode into a Score.

``state_diff``: declare the world changes a task requires; everything else is collateral damage.
``predicates``: the field checks such declarations are written with.
``rubric``: an LLM judge answering weighted yes/no items (failures are ``GraderUndecided``).
``agreement``, ``compare``: the agreement metrics, and a grader's agreement with labels computed from
records in memory (numpy; imported on use). Reading labels, runs and judges is ``envfoundry.quality.agree``.
"""

from .predicates import MISSING, Pred, as_pred, eq, ge, gt, le, lt, ne, one_of, same_records, satisfies
from .rubric import Rubric, RubricGrader, RubricItem, Verdict, parse_verdict, render_transcript
from .state_diff import (
    ChangePattern,
    Delete,
    Insert,
    StateDiffGrader,
    StateDiffSpec,
    Update,
    grade_state_diff,
    summarize_change,
)

__all__ = [
    "MISSING", "ChangePattern", "Delete", "Insert", "Pred", "Rubric", "RubricGrader", "RubricItem",
    "StateDiffGrader", "StateDiffSpec", "Verdict", "parse_verdict", "render_transcript",
    "Update", "as_pred", "eq", "ge", "grade_state_diff", "gt", "le", "lt", "ne", "one_of",
    "same_records", "satisfies", "summarize_change",
]
