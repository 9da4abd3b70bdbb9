"""Rich rendering shared by the CLI: progress bar, summary table, trajectory views."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class RichProgress:
    """Progress bar with pass rate so far, errors and rollouts/s."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._p: Progress | None = None
        self._task: Any = None
        self._n = self._passed = self._scored = self._errors = self._shown = 0
        self._t0 = time.perf_counter()

    def start(self, total: int, done: int) -> None:
        self._p = Progress(
            TextColumn("[bold]rollouts"), BarColumn(), MofNCompleteColumn(),
            TextColumn("pass {task.fields[rate]}"), TextColumn("errors {task.fields[errors]}"),
            TextColumn("{task.fields[speed]} rollouts/s"), TimeElapsedColumn(),
            console=self.console, transient=False, refresh_per_second=8,
        )
        self._p.start()
        self._task = self._p.add_task("run", total=total, completed=done, rate="-", errors=0,
                                      speed="-")
        self._t0 = time.perf_counter()

    def advance(self, rec: dict[str, Any]) -> None:
        self._n += 1
        if rec["outcome"] in ("completed", "truncated"):
            self._scored += 1
            self._passed += bool(rec["passed"])
        else:
            self._errors += 1
        if self._p is not None and (self._n % 64 == 0 or self._n < 64):
            self._refresh()

    def _refresh(self) -> None:
        assert self._p is not None
        advance, self._shown = self._n - self._shown, self._n
        dt = max(time.perf_counter() - self._t0, 1e-9)
        rate = f"{self._passed / self._scored:.3f}" if self._scored else "-"
        self._p.update(self._task, advance=advance, rate=rate, errors=self._errors,
                       speed=f"{self._n / dt:,.0f}")

    def stop(self) -> None:
        if self._p is not None:
            self._refresh()
            self._p.stop()


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def summary_table(summary: dict[str, Any], title: str = "summary") -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    ci = summary.get("pass_rate_ci")
    t.add_row("rollouts", str(summary["n_trajectories"]))
    t.add_row("tasks x samples", f"{summary['n_tasks']} x {summary['samples']}")
    t.add_row(
        "pass rate",
        f"{_fmt(summary['pass_rate'])}" + (f"  [95% CI {ci[0]:.3f}-{ci[1]:.3f}]" if ci else ""),
    )
    t.add_row("mean score", _fmt(summary["mean_score"]))
    pak = summary.get("pass_at_k") or {}
    if pak:
        t.add_row("pass@k", "  ".join(f"@{k}={_fmt(v)}" for k, v in pak.items()))
    t.add_row("outcomes", "  ".join(f"{k}={v}" for k, v in summary["outcomes"].items() if v) or "-")
    if summary.get("n_errors"):
        t.add_row("errors", f"[red]{summary['n_errors']} (excluded from pass rate)")
    if summary.get("completion_tokens"):
        t.add_row("completion tokens", str(summary["completion_tokens"]))
    return t


def records_table(records: Iterable[dict[str, Any]], limit: int = 50) -> Table:
    t = Table(title="trajectories", title_justify="left")
    for c in ("task_id", "sample", "outcome", "score", "turns", "explanation / error"):
        t.add_column(c)
    for i, r in enumerate(records):
        if i >= limit:
            t.add_row("...", "", "", "", "", f"(first {limit} shown)")
            break
        why = r.get("explanation") or (r.get("error") or "").strip().splitlines()[-1:] or [""]
        t.add_row(r["task_id"], str(r["sample"]), r["outcome"], _fmt(r.get("score")),
                  str(r.get("turns", "")), why if isinstance(why, str) else why[0])
    return t


def trajectory_panel(r: dict[str, Any]) -> Panel:
    lines: list[str] = []
    for m in r.get("messages", []):
        role = m["role"]
        body = m.get("content") or ""
        if m.get("tool_calls"):
            for c in m["tool_calls"]:
                args = c["arguments"] if isinstance(c["arguments"], str) else json.dumps(c["arguments"])
                body += f"\n  -> {c['name']}({args})"
        lines.append(f"[bold]{role}[/bold]: {_escape(body)}")
    if r.get("world_diff"):
        lines.append("[bold]world changes[/bold]:")
        for c in r["world_diff"]:
            lines.append(_escape(f"  {c['op']} {c['table']}[{c['key']}]"
                         + (f".{c['field']}: {c['before']!r} -> {c['after']!r}" if c["field"] else "")))
    lines.append(f"[bold]outcome[/bold]: {r['outcome']}  [bold]score[/bold]: {_fmt(r.get('score'))}")
    if r.get("explanation"):
        lines.append(f"[bold]grader[/bold]: {_escape(r['explanation'])}")
    if r.get("breakdown"):
        lines.append(f"[bold]breakdown[/bold]: {_escape(json.dumps(r['breakdown']))}")
    if r.get("error"):
        lines.append(f"[red]error[/red]:\n{_escape(r['error'])}")
    return Panel("\n".join(lines), title=f"task {r['task_id']} sample {r['sample']}")


def _escape(s: str) -> str:
    from rich.markup import escape

    return escape(s)
