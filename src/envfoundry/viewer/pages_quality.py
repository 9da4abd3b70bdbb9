"""Quality results: audits (findings by severity, each with its example trajectory), calibrations
(the pass-rate histogram and knobs plot, or tables when the images are missing), stored check
results and scorecards. Each reads the JSON its command stores; a missing part is shown as missing."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.sanitize import printable
from .catalog import (
    AUDIT_FILE,
    CALIBRATION_FILE,
    CALIBRATION_STATE,
    Catalog,
    discover,
)
from .html import Safe, as_list, badge, fmt_num, fmt_rate, join, kv, link, page, pretty_json, row, seg, table, tag, url
from .pages_runs import run_url, traj_url
from .pages_traj import conversation
from .roots import Outside

MAX_JSON_BYTES = 64 << 20
#: severity order of audit findings when the audit does not name its kinds (envfoundry.quality.judging.KINDS)
KIND_ORDER = ("crash", "stall", "exploit", "reference", "error", "reward_leak", "leak", "lenient", "strict")
HIST_BINS = 10


def _text(x: Any) -> str:
    return x if isinstance(x, str) else pretty_json(x)


def file_url(ref: str) -> str:
    return f"/file/{seg(ref)}"


def _load(cat: Catalog, folder: Path, name: str) -> Any:
    p = cat.roots.file(folder, name)
    if p is None:
        raise Outside(str(folder / name))
    if p.stat().st_size > MAX_JSON_BYTES:
        raise ValueError(f"{name} is larger than {MAX_JSON_BYTES >> 20} MiB")
    return printable(json.loads(p.read_text(encoding="utf-8", errors="replace")))


def _env_of(cat: Catalog, folder: Path, name: str) -> str:
    try:
        d = _load(cat, folder, name)
    except (Outside, ValueError, OSError):
        return "?"
    return f"{d.get('env', '?')} {d.get('env_version') or d.get('version') or ''}".strip() if isinstance(d, dict) \
        else "?"


# --------------------------------------------------------------------------- overview
def quality_page(cat: Catalog) -> str:
    found = discover(cat.roots)
    r = cat.roots
    audits = [[link(r.show(p), url(f"/audit/{seg(r.ref(p))}")), _env_of(cat, p, AUDIT_FILE)] for p in found.audits]
    cals = [[link(r.show(p), url(f"/calibration/{seg(r.ref(p))}")),
             _env_of(cat, p, CALIBRATION_FILE if (p / CALIBRATION_FILE).exists() else CALIBRATION_STATE)]
            for p in found.calibrations]
    checks = [[link(r.show(p), url(f"/check/{seg(r.ref(p))}")), _env_of(cat, p.parent, p.name)]
              for p in found.checks]
    cards = [[link(r.show(p), file_url(r.ref(p)), class_="scorecard")] for p in found.scorecards]
    body = join(tag("h2", "audits"), table(["audit", "environment"], audits, id="audits") if audits else _none(),
                tag("h2", "calibrations"),
                table(["calibration", "environment"], cals, id="calibrations") if cals else _none(),
                tag("h2", "check results"),
                table(["stored check", "environment"], checks, id="checks-found") if checks else _none(
                    "none stored (save one with `envfoundry check ENV --json > quality/ENV/check.json`)"),
                tag("h2", "scorecards"), table(["scorecard"], cards, id="scorecards") if cards else _none(
                    "none (make one with `envfoundry scorecard ENV`)"))
    return page("Quality", body, crumbs=[("quality", None)])


def _none(text: str = "none found") -> Safe:
    return tag("p", text, class_="muted")


def _scorecards_near(cat: Catalog, folder: Path) -> Safe | None:
    """Links to the scorecards in ``folder``, its parent or its grandparent (quality/ENV/...)."""
    links = []
    for d in (folder, folder.parent, folder.parent.parent):
        for n in ("scorecard.html", "scorecard.json"):
            p = cat.roots.file(d, n)
            if p is not None:
                links.append(link(f"{cat.roots.show(p)}", file_url(cat.roots.ref(p)), class_="scorecard"))
    return tag("p", "scorecard: ", join(*links), id="scorecard") if links else None


# --------------------------------------------------------------------------- audit
def audit_page(cat: Catalog, ref: str) -> tuple[str, int]:
    folder = cat.roots.resolve(ref)
    d = _load(cat, folder, AUDIT_FILE)
    if not isinstance(d, dict):
        raise ValueError("audit.json does not hold an object")
    fail_on = {str(k) for k in as_list(d.get("fail_on"))}
    runs = {str(p.get("name")): p.get("run") for p in [d.get("baseline"), *as_list(d.get("probes"))]
            if isinstance(p, dict)}
    runs.setdefault("noop", "baseline-noop")
    head = kv([
        ["environment", f"{d.get('env')} {d.get('env_version')}"], ["given as", d.get("env_spec")],
        ["result", badge("ok", "pass") if d.get("ok") else badge("fails", "fail")],
        ["when", d.get("timestamp")], ["tasks × samples", f"{d.get('tasks')} × {d.get('samples')}"],
        ["seed / split", f"{d.get('seed')} / {d.get('split')}"], ["fails on", ", ".join(sorted(fail_on))],
        ["mutation kill / preservation", f"{fmt_rate(d.get('mutation_kill_rate'))} / "
                                         f"{fmt_rate(d.get('mutation_preservation_rate'))}"],
    ], id="head")
    findings = [f for f in as_list(d.get("findings")) if isinstance(f, dict)]
    order = {k: i for i, k in enumerate(KIND_ORDER)}
    by_kind: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for i, f in enumerate(findings):
        by_kind[str(f.get("kind"))].append((i, f))
    kinds = sorted(by_kind, key=lambda k: (k not in fail_on, order.get(k, len(order)), k))
    parts: list[Any] = [head, _scorecards_near(cat, folder), tag("h2", "findings by severity")]
    if not findings:
        parts.append(tag("p", "no findings", class_="muted", id="nofindings"))
    for k in kinds:
        n = len(by_kind[k])
        parts.append(tag("h3", badge(k, "fails" if k in fail_on else "sev"), f" {n} finding(s)",
                         " — fails the audit" if k in fail_on else ""))
        for i, f in by_kind[k]:
            parts.append(_finding(cat, folder, i, f, runs))
    probes = [p for p in as_list(d.get("probes")) if isinstance(p, dict)]
    if probes:
        parts += [tag("h2", "probes"), table(
            ["probe", "verdict", "why", "passes / scored", "exploit rate", "mean score", "errors", "run"],
            [[p.get("name"), badge(str(p.get("verdict")), "pass" if p.get("verdict") == "ok" else
                                   "sev" if p.get("verdict") == "skipped" else "fail"),
              p.get("reason"), f"{p.get('passes')}/{p.get('n')}", fmt_rate(p.get("exploit_rate")),
              fmt_num(p.get("mean_score")), p.get("errors"), _run_link(cat, folder, p.get("run"))]
             for p in probes], id="probes")]
    if d.get("mutations"):
        parts += [tag("h2", "grader mutation tests"),
                  tag("details", tag("summary", "results (JSON)"), tag("pre", pretty_json(d["mutations"])))]
    if as_list(d.get("notes")):
        parts += [tag("h2", "notes"), tag("ul", [tag("li", _text(n)) for n in d["notes"]])]
    return page(f"Audit {cat.roots.show(folder)}", join(*parts),
                crumbs=[("quality", "/quality"), (cat.roots.show(folder), None)]), 200


def _run_link(cat: Catalog, folder: Path, sub: Any) -> Safe | str:
    if not isinstance(sub, str) or not sub:
        return ""
    try:
        run = cat.run_dir(cat.roots.ref(folder) + "/" + sub)
    except Outside:
        return sub
    return link(sub, run_url(cat.roots.ref(run)))


def _finding(cat: Catalog, folder: Path, i: int, f: Mapping[str, Any], runs: Mapping[Any, Any]) -> Safe:
    ex = f.get("example") if isinstance(f.get("example"), dict) else None
    where: Any = None
    if ex is not None and f.get("source") != "mutation" and "task_id" in ex and "sample" in ex:
        sub = runs.get(str(f.get("name"))) or f"probe-{f.get('name')}"
        try:
            run = cat.run_dir(cat.roots.ref(folder) + "/" + str(sub))
            where = link(f"open the example trajectory (task {ex['task_id']}, sample {ex['sample']})",
                         traj_url(cat.roots.ref(run), str(ex["task_id"]), int(ex["sample"])), class_="example")
        except (Outside, ValueError, TypeError):
            where = tag("span", f"the run {sub} is not in the served folders", class_="muted")
    inline = None
    if ex is not None:
        inline = tag("details", tag("summary", "the example as the audit stored it"),
                     tag("p", f"outcome {ex.get('outcome')}, score {fmt_num(ex.get('score'))}: ",
                         ex.get("explanation") or ""),
                     conversation(ex.get("messages")) if ex.get("messages") else tag("pre", pretty_json(ex)))
    return tag("div", tag("p", tag("strong", f"{f.get('source')} {f.get('name')}"), ": ", f.get("message"),
                          tag("span", f" ({f.get('count')} of {f.get('total')} tasks)", class_="muted")),
               tag("p", where) if where is not None else None, inline, class_="finding", id=f"finding-{i}")


# --------------------------------------------------------------------------- calibration
def calibration_page(cat: Catalog, ref: str) -> tuple[str, int]:
    folder = cat.roots.resolve(ref)
    done = cat.roots.file(folder, CALIBRATION_FILE) is not None
    d = _load(cat, folder, CALIBRATION_FILE if done else CALIBRATION_STATE)
    if not isinstance(d, dict):
        raise ValueError("calibration.json does not hold an object")
    band = d.get("band") if isinstance(d.get("band"), list) else None
    facts = [("environment", f"{d.get('env')} {d.get('env_version')}"), ("model", d.get("model")),
             ("split", d.get("split")), ("band", f"[{band[0]}, {band[1]}]" if band and len(band) == 2 else band),
             ("tasks × first samples", f"{d.get('tasks', d.get('limit'))} × {d.get('samples')}"),
             ("rollouts used / budget", f"{d.get('budget_used', '—')} / {d.get('budget')}"),
             ("keep / drop / in band",
              f"{d.get('keep', '—')} / {d.get('drop', '—')} / {d.get('calibrated_split', '—')}"),
             ("mean pass rate", fmt_rate(d.get("mean_pass_rate")))]
    parts: list[Any] = [tag("p", "unfinished: only its state is stored so far", class_="note") if not done else None,
                        kv(facts, id="head"), _scorecards_near(cat, folder)]
    if isinstance(d.get("verdicts"), dict):
        parts += [tag("h2", "verdicts"), table(["verdict", "share"], [[k, _share(v)] for k, v in
                                                                      d["verdicts"].items()])]
    plots = d.get("plots") if isinstance(d.get("plots"), dict) else {}
    parts.append(tag("h2", "pass rates per task"))
    img = cat.roots.file(folder, str(plots.get("pass_rates", "pass_rates.png")))
    parts.append(tag("img", src=file_url(cat.roots.ref(img)), alt="pass-rate histogram", class_="plot")
                 if img is not None else _histogram(cat, folder))
    if d.get("knobs") or plots.get("knobs"):
        parts.append(tag("h2", "pass rate by knob"))
        kimg = cat.roots.file(folder, str(plots.get("knobs", "knobs.png")))
        parts.append(tag("img", src=file_url(cat.roots.ref(kimg)), alt="pass rate by knob", class_="plot")
                     if kimg is not None else _knobs(d.get("knobs")))
    rounds = sorted(p for p in folder.glob("round-*") if p.is_dir())
    if rounds:
        parts += [tag("h2", "rounds"), tag("ul", [tag("li", _run_link(cat, folder, p.name)) for p in rounds])]
    parts.append(tag("details", tag("summary", f"everything {CALIBRATION_FILE if done else CALIBRATION_STATE} holds"),
                     tag("pre", pretty_json(d))))
    return page(f"Calibration {cat.roots.show(folder)}", join(*parts),
                crumbs=[("quality", "/quality"), (cat.roots.show(folder), None)]), 200


def _share(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}: {fmt_num(x)}" for k, x in v.items())
    return fmt_num(v)


def _histogram(cat: Catalog, folder: Path) -> Safe:
    p = cat.roots.file(folder, "difficulty.jsonl")
    if p is None:
        return tag("p", "no plot and no difficulty.jsonl", class_="muted")
    bins: Counter[tuple[int, str]] = Counter()
    verdicts: set[str] = set()
    with open(p, "rb") as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if not isinstance(r, dict) or not isinstance(r.get("p_hat"), (int, float)):
                continue
            b = min(HIST_BINS - 1, int(float(r["p_hat"]) * HIST_BINS))
            verdicts.add(str(r.get("verdict")))
            bins[(b, str(r.get("verdict")))] += 1
    vs = sorted(verdicts)
    top = max([sum(bins[(b, v)] for v in vs) for b in range(HIST_BINS)] or [1]) or 1
    rows = []
    for b in range(HIST_BINS):
        total = sum(bins[(b, v)] for v in vs)
        rows.append([f"{b / HIST_BINS:.1f}–{(b + 1) / HIST_BINS:.1f}", total,
                     tag("meter", value=str(total), min="0", max=str(top)),
                     ", ".join(f"{v} {bins[(b, v)]}" for v in vs if bins[(b, v)])])
    return join(tag("p", "no pass_rates.png (matplotlib was not installed): the histogram as a table",
                    class_="muted"), table(["pass rate", "tasks", "", "by verdict"], rows, id="histogram"))


def _knobs(knobs: Any) -> Safe:
    if not isinstance(knobs, dict):
        return tag("p", "no knob table stored", class_="muted")
    rows = []
    for k, entries in knobs.items():
        for e in entries if isinstance(entries, list) else []:
            if isinstance(e, dict):
                rows.append(row([k, str(e.get("value")), e.get("tasks"), e.get("samples"),
                                 fmt_rate(e.get("pass_rate")),
                                 f"[{fmt_rate(e.get('ci_lo'))}, {fmt_rate(e.get('ci_hi'))}]",
                                 tag("meter", value=str(e.get("pass_rate") or 0), min="0", max="1")]))
    return table(["knob", "value", "tasks", "samples", "pass rate", "95% CI", ""], rows, id="knobs")


# --------------------------------------------------------------------------- checks
def check_page(cat: Catalog, ref: str) -> tuple[str, int]:
    p = cat.roots.resolve(ref)
    d = _load(cat, p.parent, p.name)
    checks = d.get("checks") if isinstance(d, dict) else None
    if not isinstance(checks, list):
        raise ValueError(f"{p.name} holds no check results (expected the output of `envfoundry check --json`)")
    style = {"pass": "pass", "fail": "fail"}
    rows = [[c.get("name"), badge(str(c.get("status")), style.get(str(c.get("status")), "sev")), c.get("detail"),
             tag("span", c.get("task_id") or "", class_="mono")] for c in checks if isinstance(c, dict)]
    body = join(tag("p", f"{d.get('env')} {d.get('version')}: ", badge("ok", "pass") if d.get("ok") else
                    badge("fails", "fail")), _scorecards_near(cat, p.parent),
                table(["check", "result", "detail", "task"], rows, id="checks"))
    return page(f"Check {cat.roots.show(p)}", body, crumbs=[("quality", "/quality"), (cat.roots.show(p), None)]), 200
