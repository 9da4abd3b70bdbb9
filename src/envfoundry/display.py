"""Rich rendering shared by the CLI: progress bar, summary table, trajectory views."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .core.outcome import Outcome

if TYPE_CHECKING:
    from .grading.agreement_report import AgreementReport
    from .quality.audit import AuditReport


class RichProgress:
    """Progress of rollouts: on a terminal a bar (rollouts done of all, the pass rate of the scored
    ones so far, errors, rollouts/s); otherwise (a file, a pipe, CI) a plain line every
    ``every_s`` seconds and one at the end, so a long run's log shows it is alive."""

    def __init__(self, console: Console, *, every_s: float = 10.0, what: str = "rollouts") -> None:
        self.console = console
        self.every_s = every_s
        self.what = what
        self._p: Progress | None = None
        self._task: Any = None
        self._n = self._passed = self._scored = self._errors = self._shown = 0
        self._total = self._done = self._lined = 0
        self._t0 = self._last = time.perf_counter()
        self._ticker: threading.Thread | None = None
        self._stopped = threading.Event()

    def start(self, total: int, done: int) -> None:
        self._total, self._done = total, done
        self._t0 = self._last = time.perf_counter()
        if not self.console.is_terminal:
            self.console.print(f"{self.what}: {done:,} of {total:,} done at the start", soft_wrap=True)
            # a line every every_s seconds even while no rollout finishes (a slow model, a long episode)
            self._stopped.clear()
            self._ticker = threading.Thread(target=self._tick, name="envfoundry-progress", daemon=True)
            self._ticker.start()
            return
        from rich.table import Column

        def whole(text: str) -> Column:  # a column that keeps its text whole (the bar gives way)
            return Column(no_wrap=True, min_width=len(text))

        self._p = Progress(
            TextColumn(f"[bold]{escape(self.what)}", table_column=whole(self.what)),
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=0)),
            MofNCompleteColumn(table_column=whole(f"{total}/{total}")),
            TextColumn("passed {task.fields[rate]}", table_column=Column(no_wrap=True)),
            TextColumn("errors {task.fields[errors]}", table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[speed]}", table_column=Column(no_wrap=True)),
            TimeElapsedColumn(table_column=whole("0:00:00")),
            console=self.console, transient=False, refresh_per_second=8,
        )
        self._p.start()
        self._task = self._p.add_task("run", total=total, completed=done, rate=self._rate(short=True), errors=0,
                                      speed="-")

    def _rate(self, short: bool = False) -> str:
        """``3 of 12 scored (25%)`` (``3/12 scored (25%)`` for the bar, which must fit 80 columns with
        its count of rollouts), or ``none scored yet``."""
        if not self._scored:
            return "none scored yet"
        return (f"{self._passed}{'/' if short else ' of '}{self._scored} scored "
                f"({100 * self._passed / self._scored:.0f}%)")

    def advance(self, rec: dict[str, Any]) -> None:
        self._n += 1
        if rec["outcome"] in Outcome.SCORED:
            self._scored += 1
            self._passed += bool(rec["passed"])
        else:
            self._errors += 1
        if self._p is not None and (self._n % 64 == 0 or self._n < 64):
            self._refresh()

    def _tick(self) -> None:
        while not self._stopped.wait(max(self.every_s, 0.01)):
            self._line()

    def _speed(self) -> str:
        """``12.3/s``, or ``95 s each`` when a rollout takes longer than ten seconds."""
        dt = max(time.perf_counter() - self._t0, 1e-9)
        if self._n and dt / self._n > 10:
            return f"{dt / self._n:,.0f} s each"
        return f"{self._n / dt:,.1f}/s"

    def _line(self) -> None:
        self._last = time.perf_counter()
        self.console.print(f"{self.what}: {self._done + self._n:,} of {self._total:,} done, passed {self._rate()}, "
                           f"errors {self._errors}, {self._speed()}, {self._last - self._t0:,.0f} s",
                           soft_wrap=True, highlight=False)
        self._lined = self._n

    def _refresh(self) -> None:
        assert self._p is not None
        advance, self._shown = self._n - self._shown, self._n
        self._p.update(self._task, advance=advance, rate=self._rate(short=True), errors=self._errors,
                       speed=self._speed())

    def stop(self) -> None:
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        if self._p is not None:
            self._refresh()
            self._p.stop()
            self._p = None
        elif self._total and self._n and self._lined != self._n:  # the last line, unless it was just printed
            self._line()
        self._total = 0


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def at_k(values: dict[str, Any]) -> str:
    """``@1=0.250  @2=0.400 ...`` for k = 1, 2, 4, 8, ... and the largest k, which is what a
    summary stores (:func:`envfoundry.core.stats.summary_ks`; older summaries that stored every k
    are shown the same way). None values and keys that are not a k are left out."""
    ks = [int(k) for k, v in values.items() if v is not None and str(k).isdecimal() and int(k) > 0]
    last = max(ks, default=0)
    return "  ".join(f"@{k}={_fmt(values[str(k)])}" for k in sorted(ks) if k == last or k & (k - 1) == 0) or "-"


def _table(title: str, columns: Iterable[str]) -> Table:
    """A left-titled table with these column headers (the title is text, not markup)."""
    t = Table(title=escape(title), title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")  # a narrow terminal wraps names, never cuts them
    return t


def _ci(lo: Any, hi: Any) -> str:
    """``[lo, hi]``, escaped for rich markup."""
    return escape(f"[{_fmt(lo)}, {_fmt(hi)}]")


def _with_ci(value: Any, ci: Any) -> str:
    """``value [lo, hi]``, escaped for rich markup."""
    return f"{_fmt(value)} {_ci(*(ci if ci is not None else (None, None)))}"


def summary_table(summary: dict[str, Any], title: str = "summary") -> Table:
    t = Table(title=escape(title), show_header=False, title_justify="left")
    t.add_column(style="bold", overflow="fold")
    t.add_column(overflow="fold")
    ci = summary.get("pass_rate_ci")
    t.add_row("rollouts", str(summary["n_trajectories"]))
    if summary["n_trajectories"] and not summary.get("n_scored") and summary.get("n_errors"):
        t.add_row("measured", f"[bold red]nothing: all {summary['n_errors']} rollouts ended in errors, none was scored")
        for cause, k in summary.get("error_causes") or ():
            t.add_row("", f"{k} x {escape(cause)}")
        return t
    t.add_row("tasks x samples", f"{summary['n_tasks']} x {summary['samples']}")
    t.add_row(
        "pass rate",
        f"{_fmt(summary['pass_rate'])}" + (f"  [95% CI {ci[0]:.3f}-{ci[1]:.3f}]" if ci else ""),
    )
    t.add_row("mean score", _fmt(summary["mean_score"]))
    pak = summary.get("pass_at_k") or {}
    if pak:
        t.add_row("pass@k", at_k(pak))
    t.add_row("outcomes", "  ".join(f"{k}={v}" for k, v in summary["outcomes"].items() if v) or "-")
    if summary.get("n_errors"):
        t.add_row("errors", f"[red]{summary['n_errors']} (excluded from pass rate; --resume runs them again)")
        for cause, k in summary.get("error_causes") or ():
            t.add_row("", f"{k} x {escape(cause)}")
    if summary.get("completion_tokens"):
        t.add_row("completion tokens", str(summary["completion_tokens"]))
    return t


def records_table(records: Iterable[dict[str, Any]], limit: int = 50) -> Table:
    t = _table("trajectories", ("task_id", "sample", "outcome", "score", "turns", "explanation / error"))
    for i, r in enumerate(records):
        if i >= limit:
            t.add_row("...", "", "", "", "", f"(first {limit} shown)")
            break
        why = r.get("explanation") or (r.get("error") or "").strip().splitlines()[-1:] or [""]
        t.add_row(*(_escape(str(r[k])) for k in ("task_id", "sample", "outcome")), _fmt(r.get("score")),
                  str(r.get("turns", "")), _escape(why if isinstance(why, str) else why[0]))
    return t


def trajectory_panel(r: dict[str, Any]) -> Panel:
    lines: list[str] = []
    for m in r.get("messages", []):
        role = _escape(str(m["role"]))
        body = m.get("content") or ""
        if m.get("tool_calls"):
            for c in m["tool_calls"]:
                args = c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"])
                body += f"\n  -> {c['name']}({args})"  # escaped with the body below
        lines.append(f"[bold]{role}[/bold]: {_escape(body)}")
    if r.get("world_diff"):
        lines.append(f"[bold]world changes[/bold] ({len(r['world_diff'])}):")
        lines.extend(_escape(x) for x in _diff_lines(r["world_diff"]))
    lines.append(f"[bold]outcome[/bold]: {_escape(str(r['outcome']))}  [bold]score[/bold]: {_fmt(r.get('score'))}")
    if r.get("explanation"):
        lines.append(f"[bold]grader[/bold]: {_escape(r['explanation'])}")
    if r.get("breakdown"):
        grade = _breakdown_lines(r["breakdown"])
        if grade is None:
            lines.append(f"[bold]breakdown[/bold]: {_escape(json.dumps(r['breakdown']))}")
        else:
            lines.append("[bold]grade breakdown[/bold]:")
            lines.extend(_escape(x) for x in grade)
    if r.get("error"):
        lines.append(f"[red]error[/red]:\n{_escape(r['error'])}")
    return Panel("\n".join(lines), title=escape(f"task {r['task_id']} sample {r['sample']}"))


def _short(v: Any, limit: int = 100) -> str:
    if isinstance(v, dict):
        text = ", ".join(f"{k}={_short(x, 40)}" for k, x in v.items())
    else:
        text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _diff_lines(diff: list[dict[str, Any]], limit: int = 60) -> list[str]:
    """A world diff, one line per change; an inserted record field by field (list items one per
    line), so a big new record such as an order stays readable."""
    out: list[str] = []
    for c in diff[:limit]:
        where = f"{c['table']}[{c['key']}]"
        if c["op"] == "update":
            out.append(f"  ~ {where}.{c['field']}: {_short(c['before'])} -> {_short(c['after'])}")
        elif c["op"] == "delete":
            out.append(f"  - {where}")
        else:
            out.append(f"  + {where}")
            for k, v in (c["after"] or {}).items():
                if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                    out.append(f"      {k}:")
                    out.extend(f"        - {_short(x, 160)}" for x in v[:20])
                else:
                    out.append(f"      {k}: {_short(v)}")
    if len(diff) > limit:
        out.append(f"  ... {len(diff) - limit} more changes")
    return out


def _breakdown_lines(b: Any, indent: str = "  ") -> list[str] | None:
    """Readable lines for a state-diff breakdown (requirements, collateral, allowed changes), also
    inside a combined grader's breakdown; None when ``b`` holds none."""
    if not isinstance(b, dict):
        return None
    if "requirements" in b and "collateral" in b:
        out = []
        for req in b["requirements"]:
            recs = ", ".join(f"{req['table']}[{k}]" for k in req.get("records", []))
            out.append(f"{indent}{'met' if req['met'] else 'MISSED'}: {req['name']}"
                       + (f" -> {recs}" if recs else "") + f" (credit {req['credit']:.2f})")
            if req.get("why"):
                out.append(f"{indent}    {req['why']}")
            for ck in req.get("checks", []):
                out.append(f"{indent}    {'ok ' if ck['ok'] else 'BAD'} {ck['field']} {ck['expected']}"
                           + ("" if ck["ok"] else f" (got {_short(ck['actual'])})"))
        coll = b["collateral"]
        out.append(f"{indent}collateral: {b.get('collateral_records', len(coll))} record(s)")
        out.extend(f"{indent}    {c['summary']}" for c in coll[:20])
        if b.get("allowed"):
            out.append(f"{indent}allowed side effects: {len(b['allowed'])}")
            out.extend(f"{indent}    {c['summary']}" for c in b["allowed"][:10])
        return out
    nested = [(k, _breakdown_lines(v.get("breakdown"), indent + "  ")) for k, v in b.items()
              if isinstance(v, dict) and "breakdown" in v]
    if any(lines for _, lines in nested):
        out = []
        for k, lines in nested:
            out.append(f"{indent}{k}: {b[k].get('value')}")
            out.extend(lines or [f"{indent}  {_short(b[k].get('breakdown'), 300)}"])
        return out
    return None


def _escape(s: str) -> str:
    return escape(s)


def audit_report(report: AuditReport, fail_on: Iterable[str] | None = None) -> list[Any]:
    """Rich renderables for a terminal: the probe table, the mutation table, the notes, one line per
    finding (those of a kind in ``fail_on``, default the report's own, in red) and one example
    for each finding that fails."""
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    failing = set(report.fail_on if fail_on is None else fail_on)
    ok_style = {"ok": "green", "skipped": "yellow"}

    def style(kind: str) -> str:
        return ok_style.get(kind, "bold red" if kind in failing else "yellow")

    b = report.baseline
    t = _table(f"audit {report.env} {report.version}: exploit probes (noop passes {pct(b.exploit_rate)}, "
               f"mean {num(b.mean_score)})",
               ("probe", "result", "passes", "right answer", "mean", "detail"))
    for r in [b, *report.probes]:
        passes = f"{r.passes}/{r.n}" if r.verdict != "skipped" else "-"
        right = str(r.right) if r.verdict != "skipped" else "-"
        detail = r.reason + (f"\n{r.notes}" if r.notes else "")
        t.add_row(r.name, f"[{style(r.verdict)}]{r.verdict}", passes, right, num(r.mean_score), escape(detail))
    out: list[Any] = [t]
    m = report.mutations
    if m is not None:
        mt = _table(f"grader mutations: kill rate {pct(m.kill_rate)}, preservation rate "
                    f"{pct(m.preservation_rate)}",
                    ("mutation", "kind", "applicable", "kept right", "failed", "not applicable"))
        for name, d in m.by_name().items():
            failed = f"[yellow]{d['failed']}" if d["failed"] else "0"
            mt.add_row(name, d["kind"], str(d["applicable"]), str(d["ok"]), failed, str(d["not_applicable"]))
        out.append(mt)
        out += [f"[yellow]note:[/yellow] {escape(n)}" for n in m.notes[:5]]
    out += [f"[yellow]note:[/yellow] {escape(n)}" for n in report.notes]
    for f in report.findings:
        if f.kind in failing and f.example:
            where = f"mutation {f.name}" if f.source == "mutation" else f.name
            out.append(_example_panel(f"{f.kind}: {where}: {f.message}", f.example))
    for f in report.findings:  # grouped already: one line per probe (or answer) or mutation, and kind
        mark = "finding" if f.kind in failing else "finding (does not fail)"
        out.append(f"[{style(f.kind)}]{mark}:[/] {escape(f.line())}")
    return out


def _example_panel(title: str, ex: dict[str, Any]) -> Panel:
    lines = []
    for msg in ex.get("messages", []):
        body = msg.get("content") or ""
        for c in msg.get("tool_calls") or []:
            args = c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"], default=str)
            body += f"\n  -> {c['name']}({args[:300]})"
        lines.append(f"[bold]{msg['role']}[/bold]: {escape(body[:800])}")
    why = escape(str(ex.get("explanation") or ""))
    lines.append(f"[bold]score[/bold]: {ex.get('score')}  [bold]grader[/bold]: {why}")
    if ex.get("error"):
        lines.append(f"[red]error[/red]: {escape(str(ex['error']))}")
    return Panel("\n".join(lines), title=escape(title[:150]), title_align="left")


def agreement_tables(rep: AgreementReport, title: str = "agreement", show: int = 15) -> list[Any]:
    """The report as rich renderables (what ``envfoundry agree`` prints); the first ``show`` items
    where the raters disagree (all of them are in the report's JSON)."""

    def cut(text: str, limit: int) -> str:
        return escape(text if len(text) <= limit else text[: limit - 3] + "...")

    out: list[Any] = []
    labs = ", ".join(rep.label_set[:8]) + (", ..." if len(rep.label_set) > 8 else "")
    scale = f"{rep.scale} labels" + (f" ({labs})" if labs and rep.scale != "continuous" else "")
    if rep.mode == "annotators":
        head = f"{title}: {rep.n_items} items labelled twice or more, {scale}, annotators only"
    else:
        head = f"{title}: {rep.n_items} items, {scale}, reference = {rep.reference}"
    t = _table(escape(head), ("metric", "value", "95% CI", "n", "note"))
    for x in rep.metrics:
        t.add_row(escape(x.name), _fmt(x.value), _ci(x.lo, x.hi), str(x.n), escape(x.note))
    out.append(t)
    if rep.confusion:
        names = rep.confusion["labels"]
        rows, cols = rep.confusion.get("rows", "reference"), rep.confusion.get("columns", "grader")
        c = Table(title=escape(f"confusion: rows {rows}, columns {cols}"), title_justify="left")
        c.add_column("", overflow="fold")
        for lab in names:
            c.add_column(escape(str(lab)), overflow="fold")
        if rep.per_class:
            c.add_column("precision / recall", overflow="fold")
        for lab, row in zip(names, rep.confusion["matrix"], strict=True):
            pc = rep.per_class.get(str(lab), {})
            extra = [f"{_fmt(pc.get('precision'))} / {_fmt(pc.get('recall'))}"] if rep.per_class else []
            c.add_row(escape(str(lab)), *map(str, row), *extra)
        out.append(c)
    if rep.per_rubric:
        r = _table("per rubric item (reference truth vs judge)",
                   ("item", "n", "accuracy [95% CI]", "kappa [95% CI]", "yes rate: labels / judge"))
        for x in rep.per_rubric:
            r.add_row(escape(x["item"]), str(x["n"]), _with_ci(x["accuracy"], x["accuracy_ci"]),
                      _with_ci(x["kappa"], x["kappa_ci"]), f"{x['label_yes_rate']:.2f} / {x['judge_yes_rate']:.2f}")
        out.append(r)
    if rep.raters:
        who = "annotators" if rep.mode == "annotators" else "annotators and the grader"
        a = _table(f"raters pairwise ({who})", ("a", "b", "n", "statistic", "value [95% CI]"))
        for x in rep.raters:
            a.add_row(escape(x["a"]), escape(x["b"]), str(x["n"]), x["statistic"], _with_ci(x["value"], x["ci"]))
        out.append(a)
    if rep.disagreements:
        n, shown = len(rep.disagreements), rep.disagreements[:show]
        more = f"; the first {len(shown)} here, all with --json" if n > len(shown) else ""
        grader = rep.mode != "annotators"
        d = _table(f"items where the raters disagree: {n}, most contested first (for an expert to look at){more}",
                   ("id", "labels", "majority", *(("reference", "grader") if grader else ())))
        for x in shown:
            labels = ", ".join(f"{who}={lab}" for who, lab in x["labels"].items())
            row = [cut(str(x["id"]), 40), cut(labels, 100), escape(str(x.get("majority") or "tie"))]
            if grader:
                row += [escape(str(x.get("reference", "-"))), escape(str(x.get("grader", "-")))]
            d.add_row(*row)
        out.append(d)
    return out
