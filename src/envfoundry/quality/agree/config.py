"""The options of an agreement study (:class:`AgreeConfig`): where the grader's verdicts come
from, how the labels are read, and how a judge is run. Options that cannot go together are a
UsageError when the config is made, before any file is read or any judge runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...core.errors import UsageError
from ...grading.compare import MAX_BOOT
from ...grading.labelset import SCALES
from .judge import Judge

#: judge verdicts per item: enough for self-consistency, and a bound on a typo's cost
MAX_REPEATS = 100
#: seeds are 64-bit
MAX_SEED = 2**63 - 1


class AgreeConfig(BaseModel):
    """Options of :func:`~envfoundry.quality.agree` (the ``envfoundry agree`` options, without
    the dashes). At most one of ``scores``, ``run`` and ``judge``; none of them: the annotators'
    agreement among themselves.

    Messages name the command-line options (``--scores``), as every envfoundry error does.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    # where the grader's verdicts come from
    scores: Path | list[dict[str, Any]] | None = Field(
        None, description="a scores file (JSON Lines or CSV: id, score|passed|label), or the score records")
    run: Path | None = Field(None, description="a run directory: one score per stored rollout, id TASK_ID:SAMPLE")
    judge: str | Judge | None = Field(
        None, description="an environment name or package.module:factory whose rubric judge reads the items, or a "
        "judge object (used as it is: not closed, its temperature unchanged)")
    model: str | None = Field(None, description="the model of a judge given by name: local, openai:NAME")
    items: Path | list[dict[str, Any]] | None = Field(
        None, description="the transcripts the judge reads (default: items.jsonl beside the labels file)")
    # reading the labels
    id_field: str = Field("id", description="the labels' id column (also read in a scores file without 'id')")
    label_field: str = Field("label", description="the labels' label column")
    annotator_field: str | None = Field(
        None, description="the labels' annotator column (default: 'annotator' if there is one, else one annotator)")
    label_set: str | list[str | int | float] | None = Field(
        None, description="the labels, in scale order ('fail,pass' or a list); others are an error (default: "
        "inferred)")
    scale: str | None = Field(None, description="binary, ordinal, continuous or nominal (default: inferred)")
    reference: str | None = Field(
        None, description="the reference annotator (default: gold, ground_truth, else the majority)")
    threshold: float | None = Field(
        None, description="a score >= threshold passes, when it has no label (0 to 1, or the scores' own range; "
        "default 0.5)")
    strict: bool = Field(False, description="input warnings are errors")
    # running a judge
    repeats: int = Field(2, ge=1, le=MAX_REPEATS, description="judgements per item (self-consistency)")
    adversarial: int = Field(6, ge=0, description="known-bad items to probe with each adversarial text")
    pairs: int = Field(4, ge=0, description="better/worse pairs judged in both orders")
    limit: int | None = Field(None, ge=1, description="judge only the first N items")
    temperature: float | None = Field(
        None, ge=0, le=100, allow_inf_nan=False,
        description="the judge's sampling temperature (default: 0; 0.7 with repeats > 1)")
    base_url: str | None = Field(None, description="OpenAI-compatible API root of the judge")
    api_key_env: str | None = Field(None, description="environment variable holding the judge's API key")
    save: Path | None = Field(None, description="write the judge's scores here (reuse them as scores)")
    # the statistics
    boot: int = Field(1000, ge=1, le=MAX_BOOT, description="bootstrap resamples")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the bootstrap, the judge and the probe choice")

    @property
    def has_grader(self) -> bool:
        """Whether a grader is compared with the labels (else the annotators among themselves)."""
        return self.scores is not None or self.run is not None or self.judge is not None

    @field_validator("judge", mode="before")
    @classmethod
    def _judge_kind(cls, v: Any) -> Any:
        if v is None or isinstance(v, (str, Judge)):
            return v
        raise UsageError(f"--judge takes an environment name, package.module:factory or a judge object (with "
                         f"context_for, judge_messages and prefer), got {type(v).__name__}")

    @model_validator(mode="after")
    def _consistent(self) -> AgreeConfig:
        if sum(x is not None for x in (self.scores, self.run, self.judge)) > 1:
            raise UsageError("give at most one of --scores FILE, --run RUN_DIR or --judge ENV --model MODEL "
                             "(none: the annotators' agreement among themselves)")
        if self.threshold is not None and not self.has_grader:
            raise UsageError("--threshold only applies to a grader's scores (--scores, --run or --judge)")
        if self.items is not None and self.judge is None:
            raise UsageError("--items only applies with --judge (the transcripts the judge reads)")
        if self.save is not None and self.judge is None:
            raise UsageError("--save only applies with --judge (it writes the judge's scores)")
        named = isinstance(self.judge, str)
        if named and not self.model:
            raise UsageError("--judge needs --model (e.g. --model local)")
        for name, given in (("--model", self.model), ("--temperature", self.temperature),
                            ("--base-url", self.base_url), ("--api-key-env", self.api_key_env)):
            if given is not None and not named:
                raise UsageError(f"{name} only applies with --judge" if self.judge is None else
                                 f"{name} only applies with --judge ENV: a judge object is used as it is")
        if self.limit is not None and self.judge is None:
            raise UsageError("--limit only applies with --judge")
        if self.scale is not None and self.scale not in SCALES:  # checked before a judge runs for minutes
            raise UsageError(f"unknown scale {self.scale!r} (choose from: {', '.join(SCALES)})")
        t = self.threshold
        if t is not None and not (math.isfinite(t) and (0 <= t <= 1 or self.scores is not None)):
            raise UsageError(f"--threshold must be a number from 0 to 1 (a score >= it passes), got {t}")
        return self
