"""HTML built on the server, escaped by construction: every value is text unless it is :class:`Safe`.

A page is assembled with :func:`tag`; anything that is not already :class:`Safe` (markup made by
:func:`tag` itself) is escaped with :func:`html.escape`, attribute values included. An agent's
message, a tool's result or a task id therefore cannot become markup, whatever it holds. The pages
carry no script at all, and the server sends a Content-Security-Policy without ``script-src``, so
even markup that slipped through would not run.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

from ..core.outcome import Outcome


class Safe(str):
    """Text that is markup already (made by :func:`tag` or :func:`raw`), passed through as it is."""

    __slots__ = ()


Child = Any  # str | Safe | None | number | Iterable of those


def esc(x: Any) -> Safe:
    """``x`` as markup: :class:`Safe` unchanged, None empty, anything else its text escaped."""
    if isinstance(x, Safe):
        return x
    if x is None:
        return Safe("")
    return Safe(html.escape(x if isinstance(x, str) else str(x), quote=True))


def _flat(children: Iterable[Child]) -> Iterable[Safe]:
    for c in children:
        if isinstance(c, (str, int, float)) or c is None:
            yield esc(c)
        else:
            yield from _flat(c)


def join(*children: Child) -> Safe:
    """The children, each escaped unless Safe, one after the other."""
    return Safe("".join(_flat(children)))


_VOID = frozenset({"br", "hr", "img", "input", "meta", "link"})


def tag(name: str, /, *children: Child, **attrs: Any) -> Safe:
    """``<name attrs>children</name>``. Attribute names: a trailing ``_`` is dropped (``class_``)
    and ``_`` becomes ``-``; a value of None or False leaves the attribute out, True writes it bare."""
    parts = [name]
    for k, v in attrs.items():
        if v is None or v is False:
            continue
        key = k.rstrip("_").replace("_", "-")
        parts.append(key if v is True else f'{key}="{html.escape(str(v), quote=True)}"')
    opening = f"<{' '.join(parts)}>"
    if name in _VOID:
        return Safe(opening)
    return Safe(opening + "".join(_flat(children)) + f"</{name}>")


def link(text: Child, href: str, **attrs: Any) -> Safe:
    return tag("a", text, href=href, **attrs)


def url(path: str, **query: Any) -> str:
    """An internal URL: ``path`` (its segments already quoted by :func:`seg`) and a query of the
    values that are not None or empty."""
    q = {k: v for k, v in query.items() if v is not None and v != ""}
    return path + ("?" + urlencode(q) if q else "")


def seg(text: str) -> str:
    """A path quoted for a URL (slashes kept)."""
    return quote(text, safe="/")


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON (text that is itself JSON is parsed first)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (ValueError, RecursionError, TypeError):
        return str(value)


def as_list(x: Any) -> list[Any]:
    """``x`` if it is a list, else an empty one (a damaged file may hold anything where a list belongs)."""
    return x if isinstance(x, list) else []


def fmt_rate(x: Any, digits: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    return f"{100 * x:.{digits}f}%"


def fmt_num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-3 and x else f"{x:.{digits}f}".rstrip("0").rstrip(".") or "0"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def row(cells: Iterable[Child], **attrs: Any) -> Safe:
    """A table row; a cell that is a ``<td>`` already (made with :func:`tag`) is kept as it is."""
    return tag("tr", [c if isinstance(c, Safe) and c.startswith("<td") else tag("td", c) for c in cells], **attrs)


def table(head: Iterable[Child], rows: Iterable[Any], **attrs: Any) -> Safe:
    """A table; each row is a list of cells or a row made by :func:`row` already."""
    return tag("table", tag("thead", tag("tr", [tag("th", h) for h in head])),
               tag("tbody", [r if isinstance(r, Safe) else row(r) for r in rows]), **attrs)


def kv(pairs: Iterable[tuple[Child, Child]], **attrs: Any) -> Safe:
    """A two-column table of names and values."""
    return tag("table", tag("tbody", [tag("tr", tag("th", k), tag("td", v)) for k, v in pairs]), **attrs)


def badge(text: str, kind: str) -> Safe:
    return tag("span", text, class_=f"badge {kind}")


def outcome_badge(outcome: str, passed: bool | None) -> Safe:
    if outcome in Outcome.SCORED:
        return join(badge("pass" if passed else "fail", "pass" if passed else "fail"),
                    " ", tag("span", outcome, class_="muted") if outcome == Outcome.TRUNCATED else "")
    return badge(outcome, "error")


def page(title: str, body: Child, *, crumbs: Iterable[tuple[str, str | None]] = (), refresh: int | None = None) -> str:
    """A whole page: the navigation, the breadcrumbs and ``body``."""
    nav = tag("nav", link("runs", "/"), " · ", link("compare", "/compare"), " · ", link("quality", "/quality"))
    trail = [tag("span", link(t, h) if h else t) for t, h in crumbs]
    head = join(tag("meta", charset="utf-8"),
                tag("meta", name="viewport", content="width=device-width, initial-scale=1"),
                tag("meta", http_equiv="refresh", content=str(refresh)) if refresh else None,
                tag("title", f"{title} · envfoundry view"),
                tag("link", rel="stylesheet", href="/static/view.css"))
    doc = tag("html", tag("head", head),
              tag("body", tag("header", tag("strong", "envfoundry view"), nav),
                  tag("div", join(*_between(trail, " / ")), class_="crumbs") if trail else None,
                  tag("main", tag("h1", title), body)), lang="en")
    return "<!doctype html>\n" + doc


def _between(items: list[Safe], sep: str) -> list[Child]:
    out: list[Child] = []
    for i, x in enumerate(items):
        if i:
            out.append(sep)
        out.append(x)
    return out


CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #fafafa; }
header { display: flex; gap: 2em; align-items: baseline; padding: .6em 1.2em; background: #22313f; color: #fff; }
header a { color: #cfe3ff; }
main { padding: 0 1.2em 2em; }
.crumbs { padding: .4em 1.2em; color: #555; }
h1 { font-size: 1.35em; margin: .6em 0; word-break: break-all; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
h3 { font-size: 1em; margin: 1em 0 .3em; }
table { border-collapse: collapse; margin: .4em 0 1em; background: #fff; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
tr.group td { background: #eef3fa; font-weight: 600; }
tr.failrow td { background: #fff6f6; }
tr.errrow td { background: #fff3e0; }
.badge { display: inline-block; padding: 0 .45em; border-radius: .6em; font-size: .85em; font-weight: 600; }
.badge.pass { background: #d8f3dc; color: #1b5e20; }
.badge.fail { background: #ffe0e0; color: #a4161a; }
.badge.error { background: #ffe8c2; color: #8a4b00; }
.badge.required { background: #d8f3dc; color: #1b5e20; }
.badge.allowed { background: #e3ecff; color: #1d3f8f; }
.badge.collateral { background: #ffe0e0; color: #a4161a; }
.badge.sev { background: #eee; color: #333; }
.badge.fails { background: #a4161a; color: #fff; }
.muted { color: #777; }
.mono, pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
pre { white-space: pre-wrap; word-break: break-word; margin: .2em 0; }
.msg { border: 1px solid #ddd; border-radius: 6px; margin: .6em 0; background: #fff; }
.msg > .who { padding: .2em .6em; font-weight: 600; border-bottom: 1px solid #eee; background: #f6f6f6; }
.msg > .body { padding: .3em .6em; }
.msg.system > .who { background: #f0f0f0; }
.msg.user > .who { background: #eaf2ff; }
.msg.assistant > .who { background: #eefaf0; }
.msg.tool > .who { background: #f7f0ff; }
.msg.tool.toolerror { border-color: #d33; }
.msg.tool.toolerror > .who { background: #ffe0e0; color: #a4161a; }
.call { border-left: 3px solid #6a8fd6; padding: .1em .6em; margin: .3em 0; background: #f7faff; }
.errbox { border: 1px solid #d33; background: #fff3f3; padding: .4em .6em; border-radius: 6px; }
.note { border-left: 3px solid #e0a800; background: #fffbea; padding: .3em .6em; margin: .6em 0; }
form.filters { display: flex; flex-wrap: wrap; gap: .8em; align-items: center; margin: .6em 0; }
.old { color: #a4161a; text-decoration: line-through; }
.new { color: #1b5e20; }
.pager { margin: .6em 0; display: flex; gap: 1em; }
img.plot { max-width: 100%; border: 1px solid #ddd; background: #fff; }
meter { width: 12em; }
.cols { display: grid; grid-template-columns: minmax(0, 1.15fr) minmax(0, 1fr); gap: 1.6em; }
@media (max-width: 1000px) { .cols { grid-template-columns: minmax(0, 1fr); } }
.up { color: #1b5e20; font-weight: 600; }
.down { color: #a4161a; font-weight: 600; }
"""
