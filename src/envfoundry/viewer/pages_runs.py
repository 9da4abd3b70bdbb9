"""The runs list and a run's page: per task the group of samples, sortable and filterable, with
the pass@k / pass^k table. Both read only manifests, summaries and indexes, never conversations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.outcome import Outcome
from .catalog import Catalog, RunInfo, discover
from .html import (
    Safe,
    badge,
    fmt_num,
    fmt_rate,
    join,
    kv,
    link,
    outcome_badge,
    page,
    row,
    seg,
    table,
    tag,
    url,
)
from .index import ERROR_CODES, OUTCOMES, SCORED_CODES, RunIndex

TASKS_PER_PAGE = 20
SAMPLES_PER_GROUP = 64
ROWS_PER_PAGE = 100
SORTS = {"task": "task, then sample", "score": "score, lowest first", "-score": "score, highest first",
         "turns": "turns, fewest first", "-turns": "turns, most first", "tokens": "tokens, fewest first",
         "-tokens": "tokens, most first"}
ONLY = {"": "all rollouts", "failed": "failed only", "errors": "errors only", "passed": "passed only",
        "unsolved": "failed or errored"}


def run_url(ref: str, **q: Any) -> str:
    return url(f"/run/{seg(ref)}", **q)


def traj_url(ref: str, task: str, sample: int) -> str:
    return url(f"/traj/{seg(ref)}", task=task, sample=sample)


def model_of(m: Any) -> str:
    p = m.policy if m is not None else {}
    return str(p.get("spec") or p.get("name") or "?")


def date_of(m: Any) -> str:
    return str(m.started_at)[:19].replace("T", " ") if m is not None else ""


def rate_cell(s: Mapping[str, Any] | None) -> Safe:
    if not s or s.get("pass_rate") is None:
        return tag("span", "—", class_="muted")
    ci = s.get("pass_rate_ci") or [None, None]
    return join(tag("strong", fmt_rate(s["pass_rate"])), " ",
                tag("span", f"[{fmt_rate(ci[0])}, {fmt_rate(ci[1])}]", class_="muted"),
                tag("div", f"{s.get('passes', 0)}/{s.get('n_scored', 0)} scored", class_="muted"))


def outcomes_cell(s: Mapping[str, Any] | None) -> Safe:
    if not s:
        return Safe("")
    oc = s.get("outcomes") or {}
    return join(*[tag("div", f"{o}: {n:,}", class_="down" if o in Outcome.ERRORS else None)
                  for o, n in oc.items() if isinstance(n, int) and n])


def causes_cell(s: Mapping[str, Any] | None) -> Safe:
    causes = (s or {}).get("error_causes") or []
    return join(*[tag("div", f"{k}× {c}", class_="mono") for c, k in causes[:3] if isinstance(c, str)])


# --------------------------------------------------------------------------- the list
def runs_page(cat: Catalog, q: Mapping[str, str]) -> str:
    found = discover(cat.roots)
    show_all = q.get("all") == "1"
    infos: list[tuple[RunInfo, str]] = [(cat.info(p), found.kind.get(p, "run")) for p in found.runs
                                        if show_all or found.kind.get(p, "run") == "run"]
    envs = sorted({i.manifest.env for i, _ in infos if i.manifest is not None})
    models = sorted({model_of(i.manifest) for i, _ in infos if i.manifest is not None})
    env_f, model_f = q.get("env", ""), q.get("model", "")
    shown = [(i, k) for i, k in infos if (not env_f or (i.manifest and i.manifest.env == env_f))
             and (not model_f or (i.manifest and model_of(i.manifest) == model_f))]
    shown.sort(key=lambda x: date_of(x[0].manifest), reverse=True)
    form = tag("form", _select("env", "environment", envs, env_f), _select("model", "model", models, model_f),
               tag("label", tag("input", type="checkbox", name="all", value="1", checked=show_all),
                   " include the runs inside audits and calibrations"),
               tag("button", "filter", type="submit"), method="get", action="/", class_="filters")
    rows = []
    for info, kind in shown:
        m, s = info.manifest, info.summary
        ref = cat.roots.ref(info.path)
        name = link(cat.roots.show(info.path), run_url(ref))
        if m is None:
            rows.append(row(["", name, tag("span", info.error, class_="down"), "", "", "", "", "", "", "", "", ""]))
            continue
        state = (tag("span", f"indexing… {info.indexing:,} bytes read", class_="muted")
                 if info.indexing is not None else rate_cell(s))
        planned = len(m.task_ids) * m.samples
        stored = (s or {}).get("n_trajectories")
        rows.append(row([
            tag("input", type="checkbox", name="run", value=ref, form="compare", aria_label=f"compare {ref}"),
            join(name, tag("div", kind, class_="muted") if kind != "run" else None),
            m.env, m.env_version, tag("span", model_of(m), class_="mono"), date_of(m),
            f"{len(m.task_ids):,} × {m.samples}", f"{stored:,} / {planned:,}" if stored is not None else "—",
            state, fmt_num((s or {}).get("mean_score")), outcomes_cell(s), causes_cell(s),
        ], class_="run"))
    head = ["", "run", "env", "version", "model", "started", "tasks × samples", "stored", "pass rate [95% CI]",
            "mean score", "outcomes", "error causes"]
    compare = tag("form", tag("button", "compare the two runs ticked", type="submit"), id="compare",
                  method="get", action="/compare")
    notes = [tag("p", "the folder walk stopped early: too many folders; serve a narrower folder",
                 class_="note")] if found.truncated else []
    body = join(tag("p", "serving ", ", ".join(str(p) for p in cat.roots.paths), class_="muted"), form, *notes,
                table(head, rows, id="runs") if rows else tag("p", "no runs found", class_="note"), compare)
    return page("Runs", body)


def _select(name: str, label: str, options: list[str], chosen: str) -> Safe:
    opts = [tag("option", f"any {label}", value="")] + [
        tag("option", o, value=o, selected=o == chosen) for o in options]
    return tag("label", f"{label} ", tag("select", opts, name=name))


# --------------------------------------------------------------------------- a run
def select_rows(ix: RunIndex, q: Mapping[str, str]) -> np.ndarray:
    """The rows a run page shows, in its order (see :data:`SORTS` and :data:`ONLY`)."""
    c = ix.cols
    mask = np.ones(len(ix), dtype=bool)
    only = q.get("only", "")
    scored = np.isin(c["outcome"], SCORED_CODES)
    if only == "failed":
        mask &= scored & (c["passed"] == 0)
    elif only == "errors":
        mask &= np.isin(c["outcome"], ERROR_CODES)
    elif only == "passed":
        mask &= scored & (c["passed"] == 1)
    elif only == "unsolved":
        mask &= ~(scored & (c["passed"] == 1))
    task = q.get("task")
    if task:
        ti = ix.tasks.index(task) if task in ix.tasks else -1
        mask &= c["task"] == ti
    knob = q.get("knob", "")
    if knob:
        name, _, value = knob.partition("=")
        vals = ix.knobs.get(name)
        code = vals.index(value) if vals is not None and value in vals else -2
        mask &= ix.knob(name) == code if vals is not None else False
    rows = np.flatnonzero(mask)
    sort = q.get("sort", "task")
    key = {"score": c["score"], "turns": c["turns"], "tokens": c["ptok"] + c["ctok"]}.get(sort.lstrip("-"))
    if key is None:
        order = np.lexsort((c["sample"][rows], c["task"][rows]))
    else:
        k = key[rows].astype(np.float64)
        k = np.where(np.isnan(k), np.inf, k)  # errors (no score) last either way
        if sort.startswith("-"):
            k = np.where(np.isinf(k), np.inf, -k)
        order = np.lexsort((c["sample"][rows], c["task"][rows], k))
    return rows[order]


def _page_no(q: Mapping[str, str]) -> int:
    try:
        return max(1, int(q.get("page", "1")))
    except ValueError:
        return 1


def run_page(cat: Catalog, ref: str, q: Mapping[str, str]) -> tuple[str, int]:
    run_dir = cat.run_dir(ref)
    m = cat.manifest(run_dir)
    ix, read = cat.index(run_dir, wait_s=1.5)
    crumbs = [("runs", "/"), (cat.roots.show(run_dir), None)]
    if ix is None:
        return page(f"Run {cat.roots.show(run_dir)}", tag("p", f"indexing trajectories.jsonl: {read:,} bytes read; "
                                                       "this page reloads by itself", class_="note"),
                    crumbs=crumbs, refresh=1), 200
    s = ix.summary(m.samples)
    info = kv([
        ("environment", f"{m.env} {m.env_version}"), ("given as", m.env_spec), ("model", model_of(m)),
        ("split", m.split), ("tasks × samples", f"{len(m.task_ids):,} × {m.samples}"), ("seed", m.seed),
        ("started", date_of(m)), ("envfoundry", m.package_version)], class_="kv")
    figures = table(["pass rate [95% CI]", "mean score", "stored / planned", "outcomes", "error causes", "tokens"],
                    [[rate_cell(s), fmt_num(s["mean_score"]),
                      f"{s['n_trajectories']:,} / {len(m.task_ids) * m.samples:,}", outcomes_cell(s),
                      causes_cell(s), f"{s['prompt_tokens']:,} prompt, {s['completion_tokens']:,} completion"]])
    ks = table(["k", "pass@k", "pass^k"], [[k, fmt_num(v), fmt_num(s["pass_hat_k"].get(k))]
                                           for k, v in s["pass_at_k"].items()], id="passk")
    notes = _notes(ix)
    rows = select_rows(ix, q)
    body = join(info, figures, *notes, tag("h2", "pass@k and pass^k"), ks, tag("h2", "rollouts"),
                _filters(ix, q, ref), _rollouts(ix, rows, q, ref))
    return page(f"Run {cat.roots.show(run_dir)}", body, crumbs=crumbs), 200


def _notes(ix: RunIndex) -> list[Safe]:
    out = []
    if ix.n_damaged:
        lines = "; ".join(f"line {n}: {why}" for n, why in ix.damaged)
        out.append(tag("p", f"{ix.n_damaged} damaged line(s) in trajectories.jsonl are left out ({lines})",
                       class_="note"))
    lo = ix.left_out
    if lo.get("foreign") or lo.get("repeated"):
        out.append(tag("p", f"left out: {lo.get('foreign', 0)} record(s) of tasks or samples that are not the "
                            f"run's, {lo.get('repeated', 0)} repeated record(s)", class_="note"))
    return out


def _filters(ix: RunIndex, q: Mapping[str, str], ref: str) -> Safe:
    knob_opts = [tag("option", "any knob value", value="")] + [
        tag("option", f"{k} = {v}", value=f"{k}={v}", selected=q.get("knob") == f"{k}={v}")
        for k, vals in ix.knobs.items() for v in vals]
    return tag("form",
               tag("label", "show ", tag("select", [tag("option", t, value=v, selected=q.get("only", "") == v)
                                                    for v, t in ONLY.items()], name="only")),
               tag("label", "sort by ", tag("select", [tag("option", t, value=v, selected=q.get("sort", "task") == v)
                                                       for v, t in SORTS.items()], name="sort")),
               tag("label", "knob ", tag("select", knob_opts, name="knob")) if ix.knobs else None,
               tag("label", "task ", tag("input", type="text", name="task", value=q.get("task", ""), size=18)),
               tag("button", "apply", type="submit"), method="get", action=run_url(ref), class_="filters")


def _sample_cells(ix: RunIndex, r: int, ref: str, with_task: bool) -> list[Any]:
    c = ix.cols
    outcome = OUTCOMES[int(c["outcome"][r])]
    passed = bool(c["passed"][r] == 1)
    score = float(c["score"][r])
    task = ix.tasks[int(c["task"][r])]
    sample = int(c["sample"][r])
    cells: list[Any] = [tag("span", task, class_="mono")] if with_task else []
    cells += [link(f"sample {sample}", traj_url(ref, task, sample), class_="traj"),
              outcome_badge(outcome, passed), "—" if np.isnan(score) else fmt_num(score), outcome,
              int(c["turns"][r]), f"{int(c['ptok'][r] + c['ctok'][r]):,}",
              tag("span", ix.causes.get(r, ""), class_="mono down")]
    return cells


def _row_class(ix: RunIndex, r: int) -> str:
    code = int(ix.cols["outcome"][r])
    if code in ERROR_CODES:
        return "rollout errrow"
    return "rollout" if ix.cols["passed"][r] == 1 else "rollout failrow"


def _knob_text(ix: RunIndex, r: int) -> str:
    t = int(ix.cols["task"][r])
    return ", ".join(f"{k}={ix.knobs[k][int(col[t])]}" for k, col in ix.knob_cols.items() if col[t] >= 0)


def _rollouts(ix: RunIndex, rows: np.ndarray, q: Mapping[str, str], ref: str) -> Safe:
    pg = _page_no(q)
    grouped = q.get("sort", "task") == "task"
    if not len(rows):
        return tag("p", "no rollouts match", class_="note", id="none")
    head = ["rollout", "result", "score", "outcome", "turns", "tokens", "error cause"]
    out: list[Safe] = []
    if grouped:
        tasks_in = ix.cols["task"][rows]
        starts = np.flatnonzero(np.r_[True, tasks_in[1:] != tasks_in[:-1]])
        n_pages = max(1, -(-len(starts) // TASKS_PER_PAGE))
        pg = min(pg, n_pages)
        chosen = starts[(pg - 1) * TASKS_PER_PAGE: pg * TASKS_PER_PAGE]
        nt, ct = ix.per_task()
        for st in chosen:
            end = starts[np.searchsorted(starts, st) + 1] if st != starts[-1] else len(rows)
            grp = rows[st:end]
            ti = int(ix.cols["task"][grp[0]])
            task = ix.tasks[ti]
            more = len(grp) - SAMPLES_PER_GROUP
            out.append(row([tag("td", link(task, run_url(ref, task=task), class_="mono"), " ",
                                f"{int(ct[ti])}/{int(nt[ti])} passed", " ",
                                tag("span", _knob_text(ix, int(grp[0])), class_="muted"), colspan=str(len(head)))],
                           class_="group"))
            out += [row(_sample_cells(ix, int(r), ref, False), class_=_row_class(ix, int(r)))
                    for r in grp[:SAMPLES_PER_GROUP]]
            if more > 0:
                out.append(row([tag("td", link(f"{more} more samples of this task", run_url(ref, task=task)),
                                    colspan=str(len(head)))]))
        what = f"{len(starts):,} task(s), {len(rows):,} rollout(s)"
    else:
        n_pages = max(1, -(-len(rows) // ROWS_PER_PAGE))
        pg = min(pg, n_pages)
        head = ["task", *head]
        out = [row(_sample_cells(ix, int(r), ref, True), class_=_row_class(ix, int(r)))
               for r in rows[(pg - 1) * ROWS_PER_PAGE: pg * ROWS_PER_PAGE]]
        what = f"{len(rows):,} rollout(s)"
    base = {k: v for k, v in q.items() if k != "page"}
    pager = tag("div", tag("span", f"{what}; page {pg} of {n_pages}", id="count"),
                link("← previous", run_url(ref, **base, page=pg - 1)) if pg > 1 else None,
                link("next →", run_url(ref, **base, page=pg + 1)) if pg < n_pages else None, class_="pager")
    return join(pager, table(head, out, id="rollouts"), pager)


# --------------------------------------------------------------------------- compare
def compare_page(cat: Catalog, runs: list[str]) -> tuple[str, int]:
    if len(runs) != 2:
        return _compare_form(cat, runs), 200
    dirs = [cat.run_dir(r) for r in runs]
    ms = [cat.manifest(d) for d in dirs]
    ixs = []
    for d in dirs:
        ix, read = cat.index(d, wait_s=1.5)
        if ix is None:
            return page("Compare", tag("p", f"indexing {cat.roots.show(d)}: {read:,} bytes read; this page "
                                            "reloads by itself", class_="note"), refresh=1), 200
        ixs.append(ix)
    (a, b), (ma, mb) = ixs, ms
    na, ca = a.per_task()
    nb, cb = b.per_task()
    pos_b = {t: i for i, t in enumerate(b.tasks)}
    pairs = [(i, pos_b[t]) for i, t in enumerate(a.tasks) if t in pos_b]
    how = "by task id"
    if len(pairs) < min(len(a.tasks), len(b.tasks)) / 2 and len(a.tasks) == len(b.tasks) and ma.split == mb.split \
            and ma.task_seed == mb.task_seed:
        pairs = list(enumerate(range(len(b.tasks))))
        how = (f"by position in the task list: the task ids differ (the ids hash the environment version: "
               f"{ma.env} {ma.env_version} and {mb.env} {mb.env_version}); both runs drew split {ma.split!r} with "
               f"task seed {ma.task_seed}")
    rows, up, down, flips_up, flips_down = [], 0, 0, 0, 0
    for i, j in pairs:
        ra = ca[i] / na[i] if na[i] else None
        rb = cb[j] / nb[j] if nb[j] else None
        delta = rb - ra if ra is not None and rb is not None else None
        flip = None
        if delta is not None and (ra >= 0.5) != (rb >= 0.5):
            flip = "now passes" if rb >= 0.5 else "now fails"
            flips_up += flip == "now passes"
            flips_down += flip == "now fails"
        up += bool(delta is not None and delta > 0)
        down += bool(delta is not None and delta < 0)
        rows.append((flip is not None, abs(delta or 0.0), a.tasks[i], b.tasks[j], ra, rb, delta, flip,
                     (int(ca[i]), int(na[i])), (int(cb[j]), int(nb[j]))))
    rows.sort(key=lambda x: (not x[0], -x[1], x[2]))
    ref_a, ref_b = runs
    shown = []
    for _f, _d, ta, tb, ra, rb, delta, flip, (xa, ya), (xb, yb) in rows[:1000]:
        cls = "up" if (delta or 0) > 0 else "down" if (delta or 0) < 0 else None
        shown.append(row([
            link(ta, run_url(ref_a, task=ta), class_="mono"),
            join(link(f"{xa}/{ya}", run_url(ref_a, task=ta)), " ", tag("span", fmt_rate(ra, 0), class_="muted")),
            join(link(f"{xb}/{yb}", run_url(ref_b, task=tb)), " ", tag("span", fmt_rate(rb, 0), class_="muted")),
            tag("span", "—" if delta is None else f"{100 * delta:+.0f} pts", class_=cls),
            badge(flip, "pass" if flip == "now passes" else "fail") if flip else ""],
            class_="flipped" if flip else "task"))
    sa, sb = a.summary(ma.samples), b.summary(mb.samples)
    head = table(["", "A", "B"], [
        ["run", link(cat.roots.show(dirs[0]), run_url(ref_a)), link(cat.roots.show(dirs[1]), run_url(ref_b))],
        ["environment", f"{ma.env} {ma.env_version}", f"{mb.env} {mb.env_version}"],
        ["model", model_of(ma), model_of(mb)],
        ["pass rate [95% CI]", rate_cell(sa), rate_cell(sb)]], id="compare-head")
    body = join(head, tag("p", f"{len(pairs):,} tasks matched {how}. Better in B: {up}, worse: {down}; flipped "
                               f"(pass rate crossed 50%): {flips_up} now pass, {flips_down} now fail.", id="tally"),
                table(["task", "A passed", "B passed", "change", "flipped"], shown, id="tasks"),
                tag("p", f"first 1,000 of {len(rows):,} tasks shown", class_="muted") if len(rows) > 1000 else None)
    return page("Compare two runs", body, crumbs=[("runs", "/"), ("compare", None)]), 200


def _compare_form(cat: Catalog, chosen: list[str]) -> str:
    found = discover(cat.roots)
    opts = [(cat.roots.ref(p), cat.roots.show(p)) for p in found.runs]

    def sel(name: str, pick: str | None) -> Safe:
        return tag("select", [tag("option", t, value=v, selected=v == pick) for v, t in opts], name="run",
                   aria_label=name)

    body = join(tag("p", "Pick two runs of the same tasks (two models, or two versions of an environment)."),
                tag("form", sel("A", chosen[0] if chosen else None), " vs ",
                    sel("B", chosen[1] if len(chosen) > 1 else None), tag("button", "compare", type="submit"),
                    method="get", action="/compare", class_="filters"),
                tag("p", f"{len(chosen)} run(s) were given; pick exactly two", class_="note") if chosen else None)
    return page("Compare two runs", body, crumbs=[("runs", "/"), ("compare", None)])
