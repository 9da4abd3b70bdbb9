"""Where a problem is (``tasks.yaml:42``) and the error that names it.

Every problem found while loading a declarative folder is a :class:`DeclarativeError`, an
:class:`~envfoundry.core.errors.EnvLoadError` (exit code 2) whose message starts with the file and
line: ``tasks.yaml:42: field 'amount' expects a number, got 'ten'``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import EnvLoadError


@dataclass(frozen=True, slots=True)
class Loc:
    """A place in a file of the folder: its name relative to the folder and a 1-based line (0: unknown)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class DeclarativeError(EnvLoadError):
    """A problem in a declarative environment folder, with its place."""

    def __init__(self, loc: Loc | None, message: str) -> None:
        self.loc = loc
        self.detail = message
        super().__init__(f"{loc}: {message}" if loc is not None else message)


class ExprError(Exception):
    """An expression failed while it was evaluated (a type mismatch, a missing field, division by zero).

    Raised with the expression's place; callers turn it into what fits where it happened: a
    :class:`DeclarativeError` while loading, a tool error for the agent during an episode.
    """

    def __init__(self, message: str, loc: Loc | None = None, src: str | None = None) -> None:
        self.loc = loc
        self.src = src
        self.detail = message
        where = f"{loc}: " if loc is not None else ""
        what = f"`{src if len(src) <= 160 else src[:77] + ' ... ' + src[-77:]}`: " if src else ""
        super().__init__(f"{where}{what}{message}")

    def located(self, loc: Loc | None, src: str | None) -> ExprError:
        """This error with a place (when it has none yet)."""
        return self if self.loc is not None else ExprError(self.detail, loc, src)


class Unsatisfied(Exception):
    """A generator's ``require`` step did not hold: the generator tries again with another seed."""

    def __init__(self, loc: Loc, condition: str, message: str) -> None:
        self.loc, self.condition, self.message = loc, condition, message
        super().__init__(f"{loc}: {message or condition}")


__all__ = ["DeclarativeError", "ExprError", "Loc", "Unsatisfied"]
