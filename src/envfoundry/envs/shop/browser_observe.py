"""What a ``shop-browser`` agent sees: the page's accessibility tree with element ids, pruned, plus URL,
title, HTTP status and the last action's result; and the parser that reads such an observation back.

The tree is Playwright's accessibility snapshot for AI agents (``aria_snapshot(mode="ai")``): one line
per node, ``- role "name" [state] [ref=eN]: text``, where ``eN`` is the element's id for the tools.
An element keeps its id for as long as the page is shown, and a page shown again gets the same ids,
so ids are stable and observations repeat exactly. Pruning drops what carries nothing for an agent:
unnamed layout wrappers (their children move up), a label's text repeated beside its control, and
the cursor style.

The browser talks to the server at ``http://127.0.0.1:PORT``; observations show the shop's public
origin ``http://shop.test`` instead, so that an observation does not depend on the port a process
happened to get.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

PUBLIC_ORIGIN = "http://shop.test"
_KEY = re.compile(r"(?P<role>[\w/-]+)(?: (?P<name>\"(?:[^\"\\]|\\.)*\"))?(?P<attrs>(?: \[[^\]]*\])*)")
_ATTR = re.compile(r"\[([^\]]*)\]")
_WRAPPERS = ("generic", "rowgroup", "none", "presentation")


@dataclass
class Node:
    """One line of the tree."""

    depth: int
    role: str
    name: str = ""
    ref: str = ""
    states: list[str] = field(default_factory=list)  # "checked", "selected", "active", "level=1", ...
    value: str = ""  # the text after the colon: a text node's text, a field's value
    children: bool = False  # the line ends with a colon and no text
    url: str = ""  # a link's address (from its "/url" child)
    raw: str = ""

    def describe(self) -> str:
        return f"{self.role} {json.dumps(self.name, ensure_ascii=False)}" if self.name else self.role


def _split(content: str) -> tuple[str, str, bool]:
    """(key, value, has children) of one line's content (after ``- ``), YAML quoting undone."""
    if content.startswith("'"):
        i, key = 1, []
        while i < len(content):
            if content[i] == "'":
                if content[i + 1:i + 2] == "'":
                    key.append("'")
                    i += 2
                    continue
                break
            key.append(content[i])
            i += 1
        rest = content[i + 1:]
        k = "".join(key)
    else:
        m = _KEY.match(content)
        end = m.end() if m else len(content)
        k, rest = content[:end], content[end:]
    if rest.startswith(": "):
        v = rest[2:]
        if v.startswith('"'):
            try:
                v = json.loads(v)
            except ValueError:
                pass
        return k, v, False
    return k, "", rest == ":"


def parse(tree: str) -> list[Node]:
    """The nodes of a tree (as shown in an observation), in order; a link's ``/url`` child sets its url."""
    out: list[Node] = []
    for line in tree.splitlines():
        stripped = line.lstrip(" ")
        if not stripped.startswith("- "):
            continue
        depth = (len(line) - len(stripped)) // 2
        key, value, children = _split(stripped[2:])
        m = _KEY.match(key)
        if m is None:
            continue
        if m["role"].startswith("/"):
            if m["role"] == "/url" and out:
                owner = next((n for n in reversed(out) if n.depth < depth), None)
                if owner is not None:
                    owner.url = value
            continue
        states = _ATTR.findall(m["attrs"] or "")
        ref = next((s[4:] for s in states if s.startswith("ref=")), "")
        out.append(Node(depth, m["role"], json.loads(m["name"]) if m["name"] else "", ref,
                        [s for s in states if not s.startswith("ref=")], value, children, raw=line))
    return out


def prune(tree: str) -> str:
    """The tree without unnamed wrappers (children moved up), repeated label texts and cursor styles."""
    lines = [ln.replace(" [cursor=pointer]", "") for ln in tree.splitlines() if ln.strip()]
    info: list[tuple[int, str, str, str, bool]] = []  # (depth, role, name, value, children)
    for ln in lines:
        s = ln.lstrip(" ")
        key, value, children = _split(s[2:]) if s.startswith("- ") else ("", "", False)
        m = _KEY.match(key)
        name = json.loads(m["name"]) if m and m["name"] else ""
        info.append(((len(ln) - len(s)) // 2, m["role"] if m else "", name, value, children))
    out: list[str] = []
    lift: list[int] = []  # depths of dropped wrappers above the current line
    for i, (ln, (depth, role, name, value, children)) in enumerate(zip(lines, info, strict=True)):
        while lift and lift[-1] >= depth:
            lift.pop()
        if role in _WRAPPERS and not name and not value and children:
            lift.append(depth)
            continue
        if role == "text" and value:
            near = [info[j] for j in (i - 1, i + 1) if 0 <= j < len(info) and info[j][0] == depth]
            if any(n[2] == value for n in near):
                continue
        shift = 2 * len(lift)
        out.append(ln[shift:] if ln.startswith(" " * shift) else ln.lstrip(" "))
    return "\n".join(out)


def public_url(url: str, origin: str | None) -> str:
    """``url`` with the server's real origin shown as :data:`PUBLIC_ORIGIN`."""
    if origin and (url == origin or url.startswith(origin + "/")):
        return PUBLIC_ORIGIN + (url[len(origin):] or "/")
    return url


def render(url: str, title: str, status: int | None, result: str, tree: str) -> str:
    return "\n".join([f"URL: {url}", f"Title: {title}", f"Status: {status if status is not None else 'none'}",
                      f"Last action: {result}", "Page:", tree])


@dataclass
class Observation:
    """An observation read back: the header lines and the tree's nodes."""

    url: str
    title: str
    status: int | None
    result: str
    nodes: list[Node]

    @property
    def path(self) -> str:
        return self.url[len(PUBLIC_ORIGIN):] if self.url.startswith(PUBLIC_ORIGIN) else self.url

    def find(self, role: str, name: str | None = None, *, prefix: str | None = None) -> Node | None:
        for n in self.nodes:
            if n.role == role and (name is None or n.name == name) and (prefix is None or n.name.startswith(prefix)):
                return n
        return None

    def texts(self) -> list[str]:
        return [n.value for n in self.nodes if n.value] + [n.name for n in self.nodes if n.name]


def read(text: str) -> Observation | None:
    """An observation's parts (None when ``text`` is not one, e.g. an error message)."""
    head, sep, tree = text.partition("\nPage:\n")
    if not sep:
        head, tree = text.removesuffix("\nPage:"), ""
    fields = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
    if "URL" not in fields:
        return None
    status = fields.get("Status", "")
    return Observation(fields["URL"], fields.get("Title", ""), int(status) if status.isdigit() else None,
                       fields.get("Last action", ""), parse(tree))
