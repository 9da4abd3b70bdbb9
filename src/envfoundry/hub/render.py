"""A scorecard as Markdown and as one self-contained HTML page (inline CSS and SVG, no scripts, no
external assets).

Every figure on the page carries ``data-key`` (its JSON Pointer in ``scorecard.json``) and
``data-value`` (its JSON value), and shows the value as :func:`fmt` writes it, so a reader, or a
test in a browser, can check the page against the JSON.
"""

from __future__ import annotations

import html as _html
import json
from collections.abc import Iterable, Sequence
from typing import Any

from .model import Part, Scorecard

STATUS_TEXT = {"present": "present", "missing": "MISSING", "stale": "STALE (not counted)",
               "not_applicable": "not applicable"}
_PARTS = ("check", "audit", "calibration", "agreement")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1c2430;background:#f6f7f9}
main{max-width:1060px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:24px;margin:8px 0 2px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d8dde4;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;background:#fff;margin:6px 0 10px;min-width:320px}
th,td{border:1px solid #d8dde4;padding:4px 8px;text-align:left;vertical-align:top}th{background:#eef1f5}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;font-size:12px}
.present,.pass,.ok{background:#dcf3e3;color:#0f5b2a}.missing,.fail,.bad{background:#fde2e1;color:#8a1c17}
.stale,.skipped,.warn{background:#fdf1d6;color:#7a5206}.not_applicable{background:#e6e9ee;color:#3b4452}
.sub{color:#5b6675}.cmd{background:#1c2430;color:#e9edf2;padding:6px 10px;border-radius:4px;display:block;
white-space:pre-wrap;margin:4px 0 10px}
.bar{display:inline-block;height:10px;background:#c0392b;vertical-align:middle;margin-right:6px}
.cards{display:flex;gap:10px;flex-wrap:wrap;margin:12px 0}.card{background:#fff;border:1px solid #d8dde4;
border-radius:6px;padding:8px 12px;min-width:180px}
a{color:#1f5fae}
"""


def fmt(value: Any, kind: str) -> str:
    """How the page writes a figure: ``pct`` 12.5%, ``num`` 0.123, ``int`` 12, ``text`` as it is;
    a value that is not there: ``n/a``."""
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{float(value):.1%}"
    if kind == "num":
        return f"{float(value):.3f}"
    return str(value)


def pointer(*parts: Any) -> str:
    """A JSON Pointer (RFC 6901) of the path ``parts``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _e(s: Any) -> str:
    return _html.escape(str(s), quote=True)


def _fig(value: Any, kind: str, *path: Any, tag: str = "span") -> str:
    return (f'<{tag} class="fig" data-key="{_e(pointer(*path))}" data-value="{_e(json.dumps(value))}" '
            f'data-fmt="{kind}">{_e(fmt(value, kind))}</{tag}>')


def _badge(status: str, text: str | None = None) -> str:
    return f'<span class="badge {_e(status)}">{_e(text or STATUS_TEXT.get(status, status))}</span>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    thead = f"<thead><tr>{th}</tr></thead>" if any(head) else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def _part_head(name: str, part: Part) -> str:
    bits = [_badge(part.status)]
    if part.pinned is True:
        bits.append(_badge("ok", "pinned to this content"))
    if part.note:
        bits.append(f'<span class="sub">{_e(part.note)}</span>')
    src = f'<div class="sub">from <code>{_e(part.source)}</code>' + (
        f", {_e(part.created_at)}" if part.created_at else "") + "</div>" if part.source else ""
    cmd = f'<div class="sub">reproduce:</div><code class="cmd">{_e(part.command)}</code>' if part.command else ""
    status = f'<span data-key="{_e(pointer(name, "status"))}" data-value="{_e(json.dumps(part.status))}"></span>'
    return f'<h2 id="{name}">{_e(name)}</h2>{status}<p>{" ".join(bits)}</p>{src}{cmd}'


def _summary(card: Scorecard) -> str:
    """One card per part: its status and, when present, its verdict."""
    c, a, cal, g = card.check, card.audit, card.calibration, card.agreement
    verdicts = {
        "check": ("pass", "passes") if c.ok else ("fail", f"{c.failed} failed"),
        "audit": ("ok", "no failing finding") if a.ok else ("fail", f"{len(a.open_exploits)} exploit(s), "
                                                                    f"{sum(f.fails for f in a.findings)} failing"),
        "calibration": ("ok", f"{len(cal.models)} model(s)"),
        "agreement": ("ok", f"{len(g.metrics)} metric(s)"),
    }
    cards = []
    for name, part in (("check", c), ("audit", a), ("calibration", cal), ("agreement", g)):
        cls, text = verdicts[name]
        verdict = _badge(cls, text) if part.status == "present" else ""
        cards.append(f'<div class="card"><b><a href="#{name}">{name}</a></b><br>{_badge(part.status)} {verdict}</div>')
    return '<div class="cards">' + "".join(cards) + "</div>"


def _histogram(counts: Sequence[int], edges: Sequence[float], i: int) -> str:
    w, h, pad = 420, 150, 24
    top = max(counts) or 1
    bw = (w - 2 * pad) / len(counts)
    bars = []
    for k, c in enumerate(counts):
        bh = (h - 2 * pad) * c / top
        x, y = pad + k * bw, h - pad - bh
        key = pointer("calibration", "models", i, "histogram", k)
        bars.append(f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{bw - 4:.1f}" height="{bh:.1f}" fill="#2e6fba">'
                    f"<title>{edges[k]:.1f}-{edges[k + 1]:.1f}: {c}</title></rect>"
                    f'<text x="{x + bw / 2:.1f}" y="{y - 4:.1f}" font-size="11" text-anchor="middle" class="fig" '
                    f'data-key="{_e(key)}" data-value="{c}" data-fmt="int">{c}</text>'
                    f'<text x="{x + bw / 2:.1f}" y="{h - 8}" font-size="10" text-anchor="middle" fill="#5b6675">'
                    f"{edges[k]:.1f}</text>")
    return (f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="pass-rate histogram" '
            f'style="background:#fff;border:1px solid #d8dde4">{"".join(bars)}</svg>')


def html(card: Scorecard) -> str:
    """The scorecard as one HTML page."""
    i = card.identity
    out = [f"<h1>{_e(i.env)} {_fig(i.env_version, 'text', 'identity', 'env_version')}</h1>",
           f'<div class="sub">scorecard of {_e(i.spec)}'
           + (f" from package <b>{_e(i.package)}</b> {_e(i.package_version or '')}" if i.package else "")
           + f", made {_e(card.created_at)} with envfoundry {_e(i.envfoundry_version)}</div>", _summary(card)]
    out.append("<h2 id=\"identity\">identity</h2>" + _table(["", ""], [
        ["content hash", f'<code>{_fig(i.content_hash, "text", "identity", "content_hash")}</code>'
         f'<div class="sub">{_e(i.hash_rule)}; root <code>{_e(i.root)}</code>, {len(i.files)} file(s)</div>'],
        ["tasks hash", f'<code>{_fig(i.tasks_hash, "text", "identity", "tasks_hash")}</code>'
         f'<div class="sub">{_e(i.tasks_rule)}</div>'],
    ]))
    out.append("<h3>tasks per split</h3>" + _table(["split", "tasks"], [
        [_e(s), _fig(n, "int", "splits", s)] for s, n in card.splits.items()]))
    out.append("<details><summary>files</summary>" + _table(["file", "sha256"], [
        [f"<code>{_e(f)}</code>", f"<code>{_e(h)}</code>"] for f, h in i.files.items()]) + "</details>")
    if card.pack is not None:
        allowed = "".join(f"<li>{_e(x)}</li>" for x in card.pack.allowed_findings)
        out.append(f'<h2 id="pack">pack</h2><p>packed {_e(card.pack.packed_at)}</p>' + (
            f'<p>{_badge("bad", "packed with open findings (--allow-findings)")}</p><ul>{allowed}</ul>'
            if allowed else ""))
    c = card.check
    out.append(_part_head("check", c))
    if c.status != "missing":
        out.append("<p>" + ", ".join([_fig(c.passed, "int", "check", "passed") + " passed",
                                      _fig(c.failed, "int", "check", "failed") + " failed",
                                      _fig(c.skipped, "int", "check", "skipped") + " skipped"]) + "</p>")
        out.append(_table(["check", "result", "detail"], [
            [_e(r.name), _badge(r.status, r.status), _e(r.detail)] for r in c.results]))
    a = card.audit
    out.append(_part_head("audit", a))
    if a.status != "missing":
        out.append("<h3>findings by severity</h3>" + _table(["kind", "findings"], [
            [_e(k), _fig(n, "int", "audit", "findings_by_severity", k)] for k, n in a.findings_by_severity.items()]))
        if a.findings:
            out.append(_table(["kind", "where", "name", "tasks", "message"], [
                [_badge("bad" if f.fails else "warn", f.kind), _e(f.where), _e(f.name), f"{f.tasks}/{f.of_tasks}",
                 _e(f.message)] for f in a.findings]))
        out.append("<h3>exploit rate per probe</h3>" + _table(["probe", "exploit rate"], [
            [_e(p), f'<span class="bar" style="width:{120 * (r or 0):.0f}px"></span>'
             + _fig(r, "pct", "audit", "exploit_rate", p)] for p, r in a.exploit_rate.items()]))
        if a.skipped_probes:
            out.append("<details><summary>skipped probes</summary>" + _table(["probe", "why"], [
                [_e(p), _e(w)] for p, w in a.skipped_probes.items()]) + "</details>")
        out.append("<h3>grader mutations</h3>" + _table(["", ""], [
            ["kill rate (wrong changes that lose the score)",
             _fig(a.mutation_kill_rate, "pct", "audit", "mutation_kill_rate")],
            ["preservation rate (equivalent changes that keep it)",
             _fig(a.mutation_preservation_rate, "pct", "audit", "mutation_preservation_rate")]]))
    cal = card.calibration
    out.append(_part_head("calibration", cal))
    for k, m in enumerate(cal.models):
        tasks = _fig(m.tasks, "int", "calibration", "models", k, "tasks")
        out.append(f'<h3>{_e(m.model)}</h3><div class="sub">{tasks}'
                   f" tasks, band [{m.band[0]:g}, {m.band[1]:g}], from <code>{_e(m.source)}</code></div>")
        out.append(_histogram(m.histogram, m.histogram_edges, k))
        out.append(_table(["", ""], [
            ["mean pass rate", _fig(m.mean_pass_rate, "pct", "calibration", "models", k, "mean_pass_rate")],
            ["zero-variance groups", _fig(m.zero_variance_share, "pct", "calibration", "models", k,
                                          "zero_variance_share")],
            *[[f"share {_e(v)}", _fig(s, "pct", "calibration", "models", k, "band_shares", v)]
              for v, s in m.band_shares.items()]]))
        out.append(f'<code class="cmd">{_e(m.command)}</code>')
    g = card.agreement
    out.append(_part_head("agreement", g))
    if g.status in ("present", "stale"):
        out.append(f'<div class="sub">{_fig(g.n_items, "int", "agreement", "n_items")} items, scale '
                   f"{_e(g.scale)}, labels {_e(g.labels)}</div>")
        out.append(_table(["metric", "value", "95% CI"], [
            [_e(m.name), _fig(m.value, "num", "agreement", "metrics", k, "value"),
             f"{fmt(m.lo, 'num')} - {fmt(m.hi, 'num')}"] for k, m in enumerate(g.metrics)]))
    title = f"{i.env} {i.env_version} - envfoundry scorecard"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{_e(title)}</title><style>{CSS}</style></head>'
            f'<body><main>{"".join(out)}</main></body></html>\n')


# ------------------------------------------------------------------------ Markdown
def _md(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _md_table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *["| " + " | ".join(_md(c) for c in r) + " |" for r in rows], ""]


def _md_part(name: str, part: Part) -> list[str]:
    lines = [f"## {name}", "", f"**{STATUS_TEXT[part.status]}**" + (f": {part.note}" if part.note else ""), ""]
    if part.source:
        lines += [f"from `{part.source}`" + (f", {part.created_at}" if part.created_at else "")
                  + (" (pinned to this content)" if part.pinned else ""), ""]
    if part.command:
        lines += ["reproduce:", "", "```bash", part.command, "```", ""]
    return lines


def markdown(card: Scorecard) -> str:
    """The scorecard as Markdown."""
    i = card.identity
    lines = [f"# {i.env} {i.env_version}: scorecard", "",
             f"{i.spec}" + (f" from package **{i.package}** {i.package_version or ''}" if i.package else "")
             + f"; made {card.created_at} with envfoundry {i.envfoundry_version}", "",
             *_md_table(["", ""], [["content hash", f"`{i.content_hash}`"], ["hash rule", i.hash_rule],
                                   ["root", f"`{i.root}` ({len(i.files)} files)"], ["tasks hash", f"`{i.tasks_hash}`"],
                                   ["tasks rule", i.tasks_rule]]),
             "## tasks per split", "", *_md_table(["split", "tasks"], card.splits.items())]
    if card.pack is not None and card.pack.allowed_findings:
        lines += ["## pack", "", "**packed with open findings (--allow-findings):**", "",
                  *[f"- {x}" for x in card.pack.allowed_findings], ""]
    c = card.check
    lines += _md_part("check", c)
    if c.status != "missing":
        lines += [f"{fmt(c.passed, 'int')} passed, {fmt(c.failed, 'int')} failed, {fmt(c.skipped, 'int')} skipped", "",
                  *_md_table(["check", "result", "detail"], [[r.name, r.status, r.detail] for r in c.results])]
    a = card.audit
    lines += _md_part("audit", a)
    if a.status != "missing":
        lines += ["findings by severity:", "", *_md_table(["kind", "findings"], a.findings_by_severity.items())]
        if a.findings:
            lines += _md_table(["kind", "where", "name", "tasks", "message"],
                               [[f.kind, f.where, f.name, f"{f.tasks}/{f.of_tasks}", f.message] for f in a.findings])
        lines += ["exploit rate per probe:", "",
                  *_md_table(["probe", "exploit rate"], [[p, fmt(r, "pct")] for p, r in a.exploit_rate.items()]),
                  f"mutation kill rate {fmt(a.mutation_kill_rate, 'pct')}, preservation rate "
                  f"{fmt(a.mutation_preservation_rate, 'pct')}", ""]
    cal = card.calibration
    lines += _md_part("calibration", cal)
    for m in cal.models:
        lines += [f"### {m.model}", "", f"{m.tasks} tasks, band [{m.band[0]:g}, {m.band[1]:g}], mean pass rate "
                  f"{fmt(m.mean_pass_rate, 'pct')}, zero-variance groups {fmt(m.zero_variance_share, 'pct')}", "",
                  *_md_table(["pass rate", *[f"{m.histogram_edges[k]:.1f}-{m.histogram_edges[k + 1]:.1f}"
                                             for k in range(len(m.histogram))]], [["tasks", *m.histogram]]),
                  *_md_table(["verdict", "share"], [[v, fmt(s, "pct")] for v, s in m.band_shares.items()]),
                  "```bash", m.command, "```", ""]
    g = card.agreement
    lines += _md_part("agreement", g)
    if g.status in ("present", "stale"):
        lines += [f"{g.n_items} items, scale {g.scale}", "",
                  *_md_table(["metric", "value", "95% CI"], [[m.name, fmt(m.value, "num"),
                                                              f"{fmt(m.lo, 'num')} - {fmt(m.hi, 'num')}"]
                                                             for m in g.metrics])]
    return "\n".join(lines).rstrip() + "\n"


__all__ = ["CSS", "STATUS_TEXT", "fmt", "html", "markdown", "pointer"]
