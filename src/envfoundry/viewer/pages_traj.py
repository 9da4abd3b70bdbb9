"""A trajectory's page: the conversation with its tool calls and results, the grader's breakdown,
the world diff (required / allowed / collateral marked where a state-diff breakdown says so),
timings and token usage. The one record is read from its line through the run's index."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from ..core.outcome import Outcome
from ..core.record import check_record
from ..core.sanitize import printable
from .catalog import Catalog
from .html import (
    Safe,
    as_list,
    badge,
    fmt_num,
    join,
    link,
    outcome_badge,
    page,
    pretty_json,
    row,
    table,
    tag,
)
from .pages_runs import model_of, run_url, traj_url
from .roots import Outside

TOOL_ERROR_PREFIX = "error:"
#: a message longer than this is folded under its first line
LONG_LINES = 30
LONG_CHARS = 4000


def _text(x: Any) -> str:
    return x if isinstance(x, str) else pretty_json(x)


def trajectory_page(cat: Catalog, ref: str, q: Mapping[str, str]) -> tuple[str, int]:
    run_dir = cat.run_dir(ref)
    m = cat.manifest(run_dir)
    task = q.get("task", "")
    try:
        sample = int(q.get("sample", ""))
    except ValueError:
        raise Outside("no such sample") from None
    ix, read = cat.index(run_dir, wait_s=None)
    assert ix is not None
    r = ix.find(task, sample)
    if r is None:
        raise Outside(f"no trajectory {task} sample {sample}")
    raw = ix.read(r)
    if raw.get("task_id") != task or raw.get("sample") != sample:  # the file changed since it was indexed
        ix, _ = cat.index(run_dir, wait_s=None)
        assert ix is not None
        r = ix.find(task, sample)
        if r is None:
            raise Outside(f"no trajectory {task} sample {sample}")
        raw = ix.read(r)
    why = check_record(raw)  # the index checked only the fields it keeps
    rec = printable(raw)  # secrets redacted, lone surrogates and control characters escaped
    outcome = str(rec.get("outcome"))
    crumbs = [("runs", "/"), (cat.roots.show(run_dir), run_url(ref)), (task, run_url(ref, task=task)),
              (f"sample {sample}", None)]
    group = sorted(int(s) for s in ix.cols["sample"][ix.cols["task"] == ix.tasks.index(task)])
    nav = [link(f"sample {s}", traj_url(ref, task, s)) if s != sample else tag("strong", f"sample {s}")
           for s in group[:64]]
    u = rec.get("usage") if isinstance(rec.get("usage"), dict) else {}
    tokens = sum(v for v in u.values() if isinstance(v, int))
    head = table(["result", "score", "outcome", "turns", "tokens", "model", "environment", "seed", "split", "line"],
                 [[outcome_badge(outcome, rec.get("passed")), fmt_num(rec.get("score")), outcome, rec.get("turns"),
                   f"{tokens:,}", tag("span", model_of(m), class_="mono"), f"{m.env} {m.env_version}",
                   rec.get("seed"), rec.get("split"), int(ix.cols["line"][r])]], id="head")
    top: list[Any] = [head, tag("p", "samples of this task: ", join(*_sep(nav, " · ")), class_="muted")]
    if why is not None:
        top.append(tag("p", f"line {int(ix.cols['line'][r])} is damaged ({why}): shown as far as it can be",
                       class_="note", id="damaged"))
    for what in ("escaped", "redacted"):
        if rec.get(what):
            top.append(tag("p", f"{what} when stored: ", ", ".join(map(str, rec[what])), class_="note"))
    if rec.get("error"):
        top += [tag("h2", "error"), tag("pre", _text(rec["error"]), class_="errbox", id="error")]
    if rec.get("outcome") in Outcome.SCORED:
        top.append(tag("p", tag("strong", "grader: "), tag("span", rec.get("explanation") or "—", id="explanation")))
    left = [tag("h2", "conversation"), conversation(rec.get("messages"))]
    right: list[Any] = [tag("h2", "world diff"), _world_diff(rec), tag("h2", "grader"), _grader(rec),
                        tag("h2", "timings and tokens"), _usage(rec)]
    if rec.get("metadata"):
        right += [tag("h2", "task metadata"), table(["knob", "value"], [[k, _text(v)] for k, v in
                                                                        _items(rec["metadata"])])]
    parts = [*top, tag("div", tag("section", *left, class_="left"), tag("section", *right, class_="right"),
                       class_="cols")]
    title = f"{task} · sample {sample}"
    return page(title, join(*parts), crumbs=crumbs), 200


def _sep(items: list[Safe], sep: str) -> list[Any]:
    out: list[Any] = []
    for i, x in enumerate(items):
        out += [sep, x] if i else [x]
    return out


def _items(d: Any) -> list[tuple[str, Any]]:
    return list(d.items()) if isinstance(d, dict) else []


# --------------------------------------------------------------------------- conversation
def conversation(messages: Any) -> Safe:
    if not isinstance(messages, list) or not messages:
        return tag("p", "no messages", class_="muted")
    calls: dict[str, str] = {}
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            out.append(tag("pre", _text(msg)))
            continue
        role = str(msg.get("role", "?"))
        content = msg.get("content")
        body: list[Any] = []
        cls = f"msg {role}"
        who: list[Any] = [role]
        if role == "tool":
            cid = str(msg.get("tool_call_id", ""))
            name = msg.get("name") or calls.get(cid, "")
            who = ["tool result ", tag("code", name), tag("span", f" for call {cid}", class_="muted") if cid else ""]
            if isinstance(content, str) and content.lstrip().lower().startswith(TOOL_ERROR_PREFIX):
                cls += " toolerror"
                who.append(join(" ", badge("tool error", "error")))
        if content not in (None, ""):
            body.append(_long(_text(content)))
        for call in as_list(msg.get("tool_calls")):
            if not isinstance(call, dict):
                continue
            cid = str(call.get("id", ""))
            calls[cid] = str(call.get("name", ""))
            body.append(tag("div", tag("div", "calls ", tag("code", call.get("name"), class_="toolname"),
                                       tag("span", f"  id {cid}", class_="muted") if cid else ""),
                            tag("pre", pretty_json(call.get("arguments")), class_="args"), class_="call"))
        out.append(tag("div", tag("div", f"#{i} ", *who, class_="who"), tag("div", *body, class_="body"),
                       class_=cls))
    return join(*out)


def _long(text: str) -> Safe:
    """A message's text; a long one folded under its first line (``<details>``, no script needed)."""
    lines = text.count("\n") + 1
    if lines <= LONG_LINES and len(text) <= LONG_CHARS:
        return tag("pre", text, class_="content")
    first = text.split("\n", 1)[0][:160]
    return tag("details", tag("summary", first, tag("span", f"  … {lines:,} lines, {len(text):,} characters",
                                                   class_="muted")), tag("pre", text, class_="content"))


def _compact(v: Any, limit: int = 240) -> str:
    try:
        s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        s = str(v)
    return s if len(s) <= limit else s[:limit] + " …"


# --------------------------------------------------------------------------- grader
def _state_diffs(breakdown: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """The state-diff breakdowns in ``breakdown`` (one per state-diff grader; several graders nest theirs)."""
    if not isinstance(breakdown, dict) or depth > 3:
        return
    if any(k in breakdown for k in ("collateral", "allowed", "requirements")):
        yield breakdown
        return
    for v in breakdown.values():
        yield from _state_diffs(v, depth + 1)


def _grader(rec: Mapping[str, Any]) -> Safe:
    if rec.get("outcome") not in Outcome.SCORED:
        return tag("p", "not graded (an error outcome carries no score)", class_="muted")
    parts: list[Any] = []
    bd = rec.get("breakdown")
    scalars = [(k, v) for k, v in _items(bd) if not isinstance(v, (dict, list))]
    if scalars:
        parts.append(table(["part", "value"], [[k, fmt_num(v)] for k, v in scalars], id="breakdown"))
    for sd in _state_diffs(bd):
        reqs = as_list(sd.get("requirements"))
        rows = []
        for req in reqs if isinstance(reqs, list) else []:
            if not isinstance(req, dict):
                continue
            checks = [tag("div", badge("ok" if c.get("ok") else "no", "pass" if c.get("ok") else "fail"), " ",
                          tag("code", c.get("field")), " ", c.get("expected"), " ",
                          tag("span", f"(got {_compact(c.get('actual'))})", class_="muted"))
                      for c in as_list(req.get("checks")) if isinstance(c, dict)]
            rows.append([req.get("name"), req.get("kind"), req.get("table"),
                         badge("met", "pass") if req.get("met") else badge("not met", "fail"),
                         fmt_num(req.get("credit")), join(*checks, tag("div", req.get("why"), class_="down")
                                                          if req.get("why") else None)])
        if rows:
            parts.append(table(["requirement", "kind", "table", "met", "credit", "checks"], rows,
                               class_="requirements"))
    if bd:
        parts.append(tag("details", tag("summary", "the whole breakdown (JSON)"), tag("pre", pretty_json(bd))))
    return join(*parts)


# --------------------------------------------------------------------------- world diff
def _marks(rec: Mapping[str, Any]) -> tuple[dict[tuple[Any, ...], str], set[tuple[str, str, str]]]:
    """Each change's mark from the state-diff breakdowns: collateral and allowed changes by
    (op, table, key, field); required records by (kind, table, key)."""
    marks: dict[tuple[Any, ...], str] = {}
    required: set[tuple[str, str, str]] = set()
    for sd in _state_diffs(rec.get("breakdown")):
        for kind in ("allowed", "collateral"):
            for c in as_list(sd.get(kind)):
                if isinstance(c, dict):
                    marks[_key(c)] = kind
        for req in as_list(sd.get("requirements")):
            if isinstance(req, dict):
                for key in as_list(req.get("records")):
                    required.add((str(req.get("kind")), str(req.get("table")), str(key)))
    return marks, required


def _key(c: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(c.get(k)) for k in ("op", "table", "key", "field"))


def _world_diff(rec: Mapping[str, Any]) -> Safe:
    diff = rec.get("world_diff")
    if diff is None:
        return tag("p", "no world (this environment keeps no state), or none recorded", class_="muted")
    if not diff:
        return tag("p", "the world did not change", class_="muted", id="worlddiff")
    if not isinstance(diff, list):
        return tag("pre", pretty_json(diff), id="worlddiff")
    marks, required = _marks(rec)
    rows = []
    for c in diff:
        if not isinstance(c, dict):
            continue
        op, tbl, key, fld = c.get("op"), c.get("table"), str(c.get("key")), c.get("field")
        mark = marks.get(_key(c))
        if mark is None and (str(op), str(tbl), key) in required:
            mark = "required"
        before, after = c.get("before"), c.get("after")
        if op == "update":
            change = join(tag("span", _short(before), class_="old mono"), " → ", tag("span", _short(after),
                                                                                   class_="new mono"))
        elif op == "insert":
            change = _fields(after, "new")
        else:
            change = _fields(before, "old")
        rows.append(row([badge(mark, mark) if mark else tag("span", "—", class_="muted"), op, tbl,
                         tag("span", key, class_="mono"), tag("code", fld) if fld else "", change],
                        class_=f"change {op}"))
    return table(["mark", "op", "table", "key", "field", "old → new"], rows, id="worlddiff")


def _short(v: Any, limit: int = 400) -> str:
    return repr(v) if isinstance(v, str) and len(v) <= limit else _compact(v, limit)


def _fields(rec: Any, cls: str) -> Safe:
    if not isinstance(rec, dict):
        return tag("span", _short(rec), class_=f"{cls} mono")
    return join(*[tag("div", tag("code", k), ": ", tag("span", _short(v), class_=f"{cls} mono"))
                  for k, v in rec.items()])


# --------------------------------------------------------------------------- usage
def _usage(rec: Mapping[str, Any]) -> Safe:
    t = rec.get("timings") if isinstance(rec.get("timings"), dict) else {}
    u = rec.get("usage") if isinstance(rec.get("usage"), dict) else {}
    parts = [table(["total s", "policy s", "environment s", "grading s", "prompt tokens", "completion tokens"],
                   [[fmt_num(t.get("total_s")), fmt_num(t.get("policy_s")), fmt_num(t.get("env_s")),
                     fmt_num(t.get("grade_s")), fmt_num(u.get("prompt_tokens")),
                     fmt_num(u.get("completion_tokens"))]], id="timings")]
    turns = rec.get("turn_usage") if isinstance(rec.get("turn_usage"), list) else []
    info = rec.get("policy_info") if isinstance(rec.get("policy_info"), list) else []
    if turns or info:
        n = max(len(turns), len(info))
        rows = []
        for i in range(n):
            tu = turns[i] if i < len(turns) and isinstance(turns[i], dict) else {}
            pi = info[i] if i < len(info) else None
            rows.append([i + 1, fmt_num(tu.get("prompt_tokens")), fmt_num(tu.get("completion_tokens")),
                         tag("pre", pretty_json(pi)) if pi else ""])
        parts.append(table(["turn", "prompt tokens", "completion tokens", "what the policy reported"], rows,
                           id="turns"))
    else:
        parts.append(tag("p", "no per-turn figures recorded (the policy reported none)", class_="muted"))
    return join(*parts)

