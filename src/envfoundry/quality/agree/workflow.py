"""``envfoundry agree`` as a library call: read the labels, get the grader's verdicts (a scores
file, a run, or a judge run over transcripts), compare (:func:`envfoundry.grading.compare.compare`).

Everything that can be refused is refused before a judge runs: the options (:class:`AgreeConfig`),
the ``--save`` path (never one of the inputs), the labels and the transcripts.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ...core.errors import UsageError
from ...grading.agreement_report import AgreementReport
from ...grading.coding import check_threshold, prepare_labels, reference_labels
from ...grading.compare import compare
from .config import AgreeConfig
from .judge import close_judge, resolve_judge, run_judge
from .labels import check_items, check_scores, load_items, load_labels, load_scores
from .sources import check_save, scores_from_run, shipped_labels, write_jsonl

#: labels: a file, the name of an environment that ships labels, or label records
Labels = str | os.PathLike[str] | Iterable[Mapping[str, Any]]


def agree(labels: Labels, config: AgreeConfig | None = None, *, on_progress: Callable[[int, int], None] | None = None,
          **options: Any) -> AgreementReport:
    """How far a grader agrees with ``labels``, or the annotators with each other: what
    ``envfoundry agree`` prints, as an :class:`~envfoundry.grading.agreement_report.AgreementReport`.

    ``labels``: a JSON Lines or CSV file, the name of an environment that ships labels
    (``"support"``), or label records ``{"id", "label", "annotator"?}``. The options are those of
    :class:`AgreeConfig`, given as ``config`` or as keywords (``agree("support", scores="s.jsonl")``;
    keywords override the config's). ``on_progress(done, total)`` follows a judge's work.

    Bad input is a :class:`~envfoundry.core.errors.UsageError`. When every judgement failed, the
    report has no items (``n_items == 0``) and counts the failures and their commonest causes in
    ``info``; the CLI exits 1 then.
    """
    cfg = _config(config, options)
    lab_path = shipped_labels(labels) if isinstance(labels, (str, os.PathLike)) else None
    items_path = _items_path(cfg, lab_path)
    if cfg.save is not None:  # before judging: never replace an input, never fail after the work
        check_save(cfg.save, {"--labels": lab_path, "--scores": _path(cfg.scores), "--items": items_path})
    if lab_path is not None:
        lab = load_labels(lab_path, id_field=cfg.id_field, label_field=cfg.label_field,
                          annotator_field=cfg.annotator_field)
    else:
        lab = _label_records(labels)
    scores, asked = None, None
    if cfg.scores is not None:
        scores = (load_scores(cfg.scores, id_field=cfg.id_field) if isinstance(cfg.scores, Path)
                  else check_scores(cfg.scores))
        check_threshold(cfg.threshold, scores)
    elif cfg.run is not None:
        scores = scores_from_run(cfg.run)
    elif cfg.judge is not None:
        scores, asked = _judge(cfg, lab, lab_path, items_path, on_progress)
        if cfg.save is not None:
            write_jsonl(cfg.save, scores)
    return compare(lab, scores, scale=cfg.scale, label_set=cfg.label_set, reference=cfg.reference,
                   threshold=0.5 if cfg.threshold is None else cfg.threshold, n_boot=cfg.boot, seed=cfg.seed,
                   strict=cfg.strict, asked=asked)


def _config(config: AgreeConfig | None, options: dict[str, Any]) -> AgreeConfig:
    """``config`` with ``options`` laid over it, checked; an unknown option is a TypeError, as
    for any function, and a bad value a UsageError naming the option."""
    fields = AgreeConfig.model_fields
    for name in options:
        if name not in fields:
            near = difflib.get_close_matches(name, fields, n=1)
            raise TypeError(f"agree() got an unexpected keyword argument {name!r}"
                            + (f"; did you mean {near[0]!r}?" if near else ""))
    if config is not None and not isinstance(config, AgreeConfig):
        raise TypeError(f"agree() takes an AgreeConfig as config, got {type(config).__name__}")
    if config is not None and not options:
        return config
    given = {name: getattr(config, name) for name in config.model_fields_set} if config is not None else {}
    try:
        return AgreeConfig(**{**given, **options})
    except ValidationError as e:
        raise UsageError(_problem(e.errors()[0])) from None


def _problem(error: Mapping[str, Any]) -> str:
    """A pydantic error as the CLI words a bad value (``--boot must be >= 1, got 0``)."""
    name = "--" + str(error["loc"][0]).replace("_", "-") if error.get("loc") else "an option"
    got, ctx = error.get("input"), error.get("ctx") or {}
    bounds = {"greater_than_equal": (">=", "ge"), "less_than_equal": ("<=", "le"), "greater_than": (">", "gt"),
              "less_than": ("<", "lt")}
    if error.get("type") in bounds:
        op, key = bounds[error["type"]]
        return f"{name} must be {op} {ctx.get(key)}, got {got!r}"
    return f"{name}: {error.get('msg', 'invalid')}, got {got!r}"


def _path(v: Any) -> Path | None:
    return v if isinstance(v, Path) else None


def _label_records(labels: Any) -> list[dict[str, Any]]:
    """Label records given in memory, as copies; the labels' checks are :func:`compare`'s."""
    if isinstance(labels, (bytes, Mapping)) or not isinstance(labels, Iterable):
        raise UsageError(f"labels are a file, an environment's name or a list of records, got {type(labels).__name__}")
    out = []
    for k, r in enumerate(labels, 1):
        if not isinstance(r, Mapping):
            raise UsageError(f"label record {k}: expected an object (a dict) with 'id' and 'label', got {r!r:.60}")
        out.append(dict(r))
    if not out:
        raise UsageError("no labels to compare with")
    return out


def _items_path(cfg: AgreeConfig, lab_path: Path | None) -> Path | None:
    """The transcripts file a judge reads: ``items``, else items.jsonl beside the labels file."""
    if cfg.judge is None or isinstance(cfg.items, list):
        return None
    if cfg.items is not None:
        return cfg.items
    return lab_path.with_name("items.jsonl") if lab_path is not None else None


def _judge(cfg: AgreeConfig, lab: list[dict[str, Any]], lab_path: Path | None, items_path: Path | None,
           on_progress: Callable[[int, int], None] | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The judge's score and probe records over the transcripts, and the ids it was asked about."""
    if isinstance(cfg.items, list):
        its = check_items(cfg.items)
    elif items_path is None:
        raise UsageError("--judge reads transcripts from --items FILE (labels given as records have no items.jsonl "
                         "beside them)")
    elif cfg.items is None and not items_path.exists():
        raise UsageError(f"--judge reads transcripts from --items FILE (there is no items.jsonl next to "
                         f"{str(lab_path)!r})")
    else:
        its = load_items(items_path)
    its = its[: cfg.limit]
    data = prepare_labels(lab, scale=cfg.scale, label_set=cfg.label_set)  # label errors before the judge runs
    ref, _ = reference_labels(data, cfg.reference)
    named = isinstance(cfg.judge, str)
    if named:
        judge = resolve_judge(cfg.judge, cfg.model or "", base_url=cfg.base_url, api_key_env=cfg.api_key_env)
        judge.temperature = cfg.temperature if cfg.temperature is not None else (0.7 if cfg.repeats > 1 else 0.0)
    else:
        judge = cfg.judge
    try:
        scores = run_judge(judge, its, reference=ref if data.labelset.scale == "binary" else {},
                           repeats=cfg.repeats, adversarial=cfg.adversarial, pairs=cfg.pairs, seed=cfg.seed,
                           on_progress=on_progress)
    finally:  # also on Ctrl-C: the request in flight cancelled, a local judge's server stopped
        if named:
            close_judge(judge)
    return scores, [it["id"] for it in its]
