"""Graders that turn a finished episode into a Score.

``state_diff``: declare the world changes a task requires; everything else is collateral damage.
``predicates``: the field checks such declarations are written with.
"""

from .predicates import MISSING, Pred, as_pred, eq, ge, gt, le, lt, ne, one_of, same_records, satisfies
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
    "MISSING", "ChangePattern", "Delete", "Insert", "Pred", "StateDiffGrader", "StateDiffSpec",
    "Update", "as_pred", "eq", "ge", "grade_state_diff", "gt", "le", "lt", "ne", "one_of",
    "same_records", "satisfies", "summarize_change",
]
