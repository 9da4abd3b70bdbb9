"""The trajectory record: one line of a run's ``trajectories.jsonl``, its schema version, and the
one check every reader applies to a record.

Each field is documented under its declaration; the README's table of record fields is printed
from these docstrings (``python -m envfoundry.core.record_docs``) and a test keeps the two equal.
:data:`SCHEMA_VERSION` numbers what a run store holds. It goes up when a record or a manifest
changes in a way an older reader would misread, and every reader refuses a run store of a newer
schema than its own (:func:`check_schema_version`) instead of misreading it.
"""

# no ``from __future__ import annotations``: Python 3.11 reads NotRequired in a TypedDict only from
# evaluated annotations, and the check below is compiled from them
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict, get_type_hints

from .errors import StoreError
from .outcome import Outcome
from .typecheck import check, fast_check, is_number
from .version import __version__

#: the schema of the run stores this package writes, and the newest it reads
SCHEMA_VERSION = 1
#: the schema of a run store whose manifest has no ``schema_version`` (written before it had one)
UNVERSIONED = 1


class ToolCallRecord(TypedDict):
    """A tool call the agent asked for."""

    id: str
    """The call's id, named by the tool's answer in ``tool_call_id`` (empty when the policy gave none)."""
    name: str
    """The tool's name, as the agent wrote it (an unknown tool's too)."""
    arguments: str | dict[str, Any]
    """The arguments: the JSON text the model wrote, or an object when the policy built them."""


class MessageRecord(TypedDict):
    """One chat message, in OpenAI's chat format."""

    role: str
    """``system``, ``user``, ``assistant`` or ``tool``."""
    content: str | None
    """The text (empty for an assistant turn of only tool calls; null only from a policy that gave none)."""
    tool_calls: NotRequired[list[ToolCallRecord]]
    """The tool calls of an assistant turn, when it made any."""
    tool_call_id: NotRequired[str]
    """On a tool's answer: the id of the call it answers."""
    name: NotRequired[str]
    """On a tool's answer: the tool's name."""


class UsageRecord(TypedDict):
    """Token counts reported by the model server."""

    prompt_tokens: int
    """Tokens of the prompts sent."""
    completion_tokens: int
    """Tokens the model generated."""


class TimingsRecord(TypedDict):
    """Where a rollout's time went, in seconds."""

    total_s: float
    """The whole rollout, grading included."""
    policy_s: float
    """Waiting for the policy (the model server)."""
    env_s: float
    """In environment code (reset, tools, the simulated user)."""
    grade_s: float
    """In the graders."""


class WorldChangeRecord(TypedDict):
    """One field-level difference between the world before and after the episode."""

    op: Literal["insert", "update", "delete"]
    """What happened to the record."""
    table: str
    """The table of the record."""
    key: str
    """The record's key in its table."""
    field: str | None
    """The changed field of an update; null for a whole-record insert or delete."""
    before: Any
    """The value before (null for an insert)."""
    after: Any
    """The value after (null for a delete)."""


class TrajectoryRecord(TypedDict):
    """One finished rollout: a line of ``trajectories.jsonl``. Everything needed to replay and
    re-grade it; the run's manifest holds what all of its rollouts share."""

    task_id: str
    """The task's id: a content hash of everything that defines the task."""
    sample: int
    """The rollout's index in its task's group of samples."""
    seed: int
    """The rollout's seed, hashed from the run seed, the task id and the sample."""
    outcome: Outcome
    """How it ended: `completed`, `truncated` (turn limit, still graded), `policy_error`, `env_error` or
    `grader_error`."""
    score: float | None
    """The grade in [0, 1]; null for an error outcome."""
    passed: bool | None
    """Whether the grade counts as solved; null for an error outcome."""
    breakdown: dict[str, Any] | None
    """The grader's parts of the score, in the grader's own shape (one entry per grader when there are several)."""
    explanation: str | None
    """The grader's reason in words; null for an error outcome."""
    error: str | None
    """For an error outcome, what failed (a traceback for `env_error` and `grader_error`); else null."""
    turns: int
    """Policy turns taken."""
    messages: list[MessageRecord]
    """The conversation, in OpenAI's chat format: the environment's prompt, then every policy turn and tool
    answer (`role`, `content`; an assistant's `tool_calls`, each with `id`, `name` and `arguments`; a tool
    answer's `tool_call_id` and `name`)."""
    usage: UsageRecord
    """Token counts of the whole rollout (`prompt_tokens`, `completion_tokens`; 0 for scripted policies)."""
    timings: TimingsRecord
    """Seconds in `total_s`, and of those `policy_s`, `env_s` (environment code) and `grade_s`."""
    split: str
    """The task's split."""
    metadata: dict[str, Any]
    """The task's metadata: descriptive facts such as difficulty knobs, never shown to the policy."""
    world_diff: NotRequired[list[WorldChangeRecord]]
    """The episode's field-level changes to the world (`op`, `table`, `key`, `field`, `before`, `after`), for
    an environment with a world."""
    policy_info: NotRequired[list[dict[str, Any]]]
    """What the policy reported of its turns (a model's `finish_reason`, tool calls it could not read, text
    it escaped; a probe's name), one object per turn that reported any."""
    turn_usage: NotRequired[list[UsageRecord]]
    """The server's token counts for each policy turn, when a model reported any."""
    escaped: NotRequired[list[str]]
    """Paths of the fields whose text could not be stored as it was and is kept escaped."""
    redacted: NotRequired[list[str]]
    """Paths of the fields in which a registered secret was replaced by `[redacted]`."""


#: the fields a reader cannot do without: every record has them, whoever wrote it
IDENTITY = ("task_id", "sample", "outcome")


class NewerSchemaError(StoreError):
    """A run store written by a newer envfoundry than this one: reading it could misread it (exit code 2)."""


def check_schema_version(version: object, store: str | Path) -> None:
    """Refuse the run store ``store`` when its manifest's ``schema_version`` is newer than
    :data:`SCHEMA_VERSION`; any other value is left to the manifest's own validation."""
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise NewerSchemaError(
            f"run store {str(store)!r} has schema version {version}, written by a newer envfoundry; this "
            f"envfoundry ({__version__}) reads schema version {SCHEMA_VERSION} and older: upgrade envfoundry "
            "(pip install --upgrade envfoundry) to read or resume it"
        )


# ------------------------------------------------------------------------------------ the check
#: what an object inside a record should have been, said before the problem found in it
_LEADS: dict[Any, str] = {
    ToolCallRecord: "is not a tool call (name and arguments)",
    UsageRecord: "holds token counts that are not integers",
    WorldChangeRecord: "is not a change (op, table, key, field, before, after)",
}
_whole = fast_check(TrajectoryRecord, frozenset(IDENTITY))
_why = check(TrajectoryRecord, _LEADS, frozenset(IDENTITY))
_IDENTITY_CHECKS = [(name, check(get_type_hints(TrajectoryRecord)[name])) for name in IDENTITY]


def check_record(obj: Any) -> str | None:
    """Why ``obj`` (a parsed line of ``trajectories.jsonl``) is not a :class:`TrajectoryRecord` a
    reader can rely on, or None when it is.

    A record must have ``task_id``, ``sample`` and ``outcome`` (:data:`IDENTITY`), and a scored
    outcome a finite ``score`` and a boolean ``passed``; every other field may be absent, and every
    field that is present, down to each message and change, must be of its declared type. Keys
    the type does not declare are left alone."""
    if _whole(obj):
        outcome = obj["outcome"]
        if outcome not in Outcome.SCORED or (is_number(obj.get("score")) and type(obj.get("passed")) is bool):
            return None
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not a record"
    missing = [k for k in IDENTITY if k not in obj]
    if missing:
        return f"no {', '.join(missing)}"
    for name, check_field in _IDENTITY_CHECKS:  # first: every other rule reads them
        p = check_field(obj[name])
        if p is not None:
            p.path.append(name)
            return p.text()
    outcome = obj["outcome"]
    if outcome in Outcome.SCORED:
        if not is_number(obj.get("score")):
            return f"a {outcome} record without a numeric score"
        if not isinstance(obj.get("passed"), bool):
            return f"a {outcome} record without a boolean 'passed'"
    why = _why(obj)
    return why.text() if why is not None else None
