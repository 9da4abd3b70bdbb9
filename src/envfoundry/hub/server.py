"""``envfoundry hub serve``: a package index that pip and uv install from, with a page per environment.

One ASGI app (FastAPI on uvicorn):

- the read side of the index is **pypiserver** (its WSGI app, mounted read-only at ``/``): the PEP
  503 simple index (``/simple/``) and the files (``/packages/``) of the folder; clients that ask for
  PEP 691 JSON (pip does) get it from the same pypiserver backend (same files, same sha256);
- the write side is envfoundry's: ``POST /`` (or ``/legacy/``) takes the legacy upload API that
  twine speaks, with the token (HTTP basic auth, any user name, the token as password, or
  ``Authorization: Bearer TOKEN``); a version is published once (409 after that) and a wheel whose
  files do not match the scorecard it carries is refused (400) (:mod:`.index`);
- pages: ``/`` lists the packages, ``/envs/NAME/`` a package's versions with their scorecards,
  ``/envs/NAME/VERSION/`` the scorecard page (also ``scorecard.json`` and ``scorecard.md``); JSON
  for programs under ``/api/packages``.
"""

import hmac
import re
import warnings
from base64 import b64decode
from pathlib import Path
from typing import Any

from .index import HubIndex, Upload, UploadRefused
from .model import PackageCard
from .render import CSS, markdown
from .render import html as scorecard_html

MAX_UPLOAD = 256 << 20
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
_HTML_TYPES = ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.latest+html", "text/html", "*/*")


def _e(s: Any) -> str:
    import html

    return html.escape(str(s), quote=True)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body><main>{body}</main></body></html>\n")


def _badge(cls: str, text: str) -> str:
    return f'<span class="badge {cls}">{_e(text)}</span>'


def summary(card: dict[str, Any] | None) -> dict[str, Any]:
    """A version's quality at a glance, from the scorecard it was published with."""
    if not card:
        return {"scorecard": False}
    cards = card.get("scorecards") or []
    return {
        "scorecard": True, "content_hash": card.get("content_hash"),
        "environments": [c["identity"]["env"] for c in cards],
        "check": [c["check"]["status"] if c["check"]["status"] != "present" else ("pass" if c["check"]["ok"]
                                                                                 else "fail") for c in cards],
        "audit_findings": [sum(c["audit"]["findings_by_severity"].values()) if c["audit"]["status"] == "present"
                           else None for c in cards],
        "open_exploits": [len(c["audit"]["open_exploits"]) for c in cards],
        "allowed_findings": [len((c.get("pack") or {}).get("allowed_findings") or []) for c in cards],
        "calibrated_models": [len(c["calibration"]["models"]) for c in cards],
    }


def _prefers_json(accept: str, fmt: str | None) -> bool:
    """Whether a simple-API client asked for PEP 691 JSON (``?format=`` or the Accept header's q-values)."""
    if fmt:
        return fmt == JSON_TYPE
    best_json, best_html = -1.0, -1.0
    for item in accept.split(","):
        kind, *params = [x.strip() for x in item.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if kind in (JSON_TYPE, "application/vnd.pypi.simple.latest+json"):
            best_json = max(best_json, q)
        elif kind in _HTML_TYPES:
            best_html = max(best_html, q)
    return best_json > 0 and best_json >= best_html


def create_app(root: Path | str, token: str, *, max_upload: int = MAX_UPLOAD) -> Any:
    """The hub's ASGI app over the folder ``root`` (uploads need ``token``)."""
    try:
        import pypiserver
        from fastapi import FastAPI, Request
        from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
        from starlette.concurrency import run_in_threadpool
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # starlette's WSGI bridge is deprecated, still kept
            from starlette.middleware.wsgi import WSGIMiddleware
    except ImportError as e:
        from ..core.errors import UsageError

        raise UsageError(f'hub serve needs {e.name}: pip install "envfoundry[hub,serve]"') from None
    from packaging.utils import canonicalize_name

    if not token:
        raise ValueError("the hub needs an upload token")
    index = HubIndex(root)
    index.root.mkdir(parents=True, exist_ok=True)
    pypi = pypiserver.app(roots=[str(index.root)], disable_fallback=True, authenticate=["update"],
                          auther=lambda _user, _password: False, hash_algo="sha256", health_endpoint="/health")
    backend = pypi._pypiserver_config.backend
    app = FastAPI(title="envfoundry hub", docs_url=None, redoc_url=None, openapi_url=None)

    def authorized(request: Request) -> str | None:
        """None when the request carries the token, else why not."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        given = None
        if scheme.lower() == "basic":
            try:
                given = b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                return "malformed basic credentials"
        elif scheme.lower() == "bearer":
            given = value.strip()
        if not given:
            return "no token"
        return None if hmac.compare_digest(given.encode(), token.encode()) else "wrong token"

    async def upload(request: Request) -> Response:
        why = authorized(request)
        if why is not None:
            status = 401 if why == "no token" else 403
            return PlainTextResponse(f"upload refused: {why} (send the hub's token as the password)", status,
                                     headers={"WWW-Authenticate": 'Basic realm="envfoundry hub"'})
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_upload:
            return PlainTextResponse(f"upload refused: larger than {max_upload:,} bytes", 413)
        try:
            form = await request.form(max_files=1, max_fields=100)
        except Exception as e:  # noqa: BLE001 - starlette raises several kinds on a bad body
            return PlainTextResponse(f"upload refused: not a multipart form ({e})", 400)
        try:
            if form.get(":action", "file_upload") != "file_upload":
                return PlainTextResponse(f"unsupported :action {form.get(':action')!r} (only file_upload)", 400)
            content = form.get("content")
            if content is None or isinstance(content, str) or not getattr(content, "filename", None):
                return PlainTextResponse("upload refused: no file in the form field 'content'", 400)
            data = await content.read(max_upload + 1)
            if len(data) > max_upload:
                return PlainTextResponse(f"upload refused: larger than {max_upload:,} bytes", 413)
            up = Upload(filename=content.filename, data=data, sha256_digest=_text(form.get("sha256_digest")),
                        name=_text(form.get("name")), version=_text(form.get("version")))
            try:
                rec = await run_in_threadpool(index.publish, up)
            except UploadRefused as e:
                return PlainTextResponse(f"upload refused: {e}", e.status)
        finally:
            await form.close()
        return PlainTextResponse(f"published {rec['package']} {rec['version']} ({rec['filename']})", 200)

    app.add_api_route("/", upload, methods=["POST"], include_in_schema=False)
    app.add_api_route("/legacy/", upload, methods=["POST"], include_in_schema=False)

    # ------------------------------------------------------------------ pages and API
    @app.get("/api/packages", include_in_schema=False)
    async def api_packages() -> Response:
        return JSONResponse([_package_entry(index, n) for n in index.projects()])

    @app.get("/api/packages/{name}", include_in_schema=False)
    async def api_package(name: str) -> Response:
        found = index.resolve(name)
        if found is None:
            return JSONResponse({"detail": f"no package or environment {name!r} on this hub"}, 404)
        return JSONResponse(_package_entry(index, found, full=True))

    @app.get("/api/packages/{name}/{version}", include_in_schema=False)
    async def api_version(name: str, version: str) -> Response:
        rec = index.record(index.resolve(name) or name, version)
        if rec is None:
            return JSONResponse({"detail": f"{name} {version} is not published on this hub"}, 404)
        return JSONResponse(rec)

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        rows = []
        for n in index.projects():
            e = _package_entry(index, n)
            latest = e["versions"][-1] if e["versions"] else {}
            rows.append(f'<tr><td><a href="envs/{_e(n)}/">{_e(e["package"])}</a></td><td>{_e(latest.get("version"))}'
                        f'</td><td>{_e(", ".join(latest.get("summary", {}).get("environments", [])))}</td>'
                        f"<td>{len(e['versions'])}</td></tr>")
        body = ("<h1>envfoundry hub</h1><p class=\"sub\">environments with their scorecards; pip installs from "
                "<code>simple/</code></p><table><thead><tr><th>package</th><th>latest</th><th>environments</th>"
                f"<th>versions</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
        return HTMLResponse(_page("envfoundry hub", body))

    @app.get("/envs/{name}/", include_in_schema=False)
    async def package_page(name: str, request: Request) -> Response:
        found = index.resolve(name)
        if found is None:
            return HTMLResponse(_page("not found", f"<h1>no package {_e(name)} on this hub</h1>"), 404)
        e = _package_entry(index, found)
        base = str(request.base_url).rstrip("/")
        rows = []
        for v in reversed(e["versions"]):
            s = v["summary"]
            if s["scorecard"]:
                check = " ".join(_badge("pass" if c == "pass" else "fail", f"check {c}") for c in s["check"])
                audit = " ".join(_badge("bad" if x else "ok", f"{x} exploit(s)") for x in s["open_exploits"])
                allowed = (" " + _badge("bad", "packed with open findings")) if any(s["allowed_findings"]) else ""
                card = f'<a href="{_e(v["version"])}/">scorecard</a> {check} {audit}{allowed}'
            else:
                card = _badge("missing", "no scorecard (not packed by envfoundry pack)")
            rows.append(f'<tr><td class="version">{_e(v["version"])}</td><td>{card}</td><td><code>'
                        f'{_e(v["filename"])}</code><div class="sub mono">sha256 {_e(v["sha256"])}</div></td>'
                        f'<td>{_e(v["uploaded_at"])}</td></tr>')
        body = (f'<p><a href="../../">hub</a></p><h1>{_e(e["package"])}</h1><p><code class="cmd">envfoundry install '
                f'{_e(e["package"])} --hub {_e(base)}</code></p><table><thead><tr><th>version</th><th>scorecard</th>'
                f"<th>file</th><th>published</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")
        return HTMLResponse(_page(e["package"], body))

    @app.get("/envs/{name}/{version}/", include_in_schema=False)
    async def version_page(name: str, version: str, env: str | None = None) -> Response:
        rec = index.record(index.resolve(name) or name, version)
        if rec is None:
            return HTMLResponse(_page("not found", f"<h1>{_e(name)} {_e(version)} is not on this hub</h1>"), 404)
        nav = (f'<p><a href="../../../">hub</a> / <a href="../">{_e(rec["package"])}</a> / {_e(rec["version"])} '
               f'(<a href="scorecard.json">json</a>, <a href="scorecard.md">markdown</a>)</p>')
        if not rec.get("card"):
            return HTMLResponse(_page(f"{rec['package']} {rec['version']}", nav + "<h1>no scorecard</h1><p>This file "
                                      "was uploaded without one (it was not packed by <code>envfoundry pack</code>): "
                                      "nothing is known about its quality.</p>"))
        card = PackageCard.model_validate(rec["card"])
        pick = next((c for c in card.scorecards if c.identity.env == env), card.scorecards[0])
        others = " ".join(f'<a href="?env={_e(c.identity.env)}">{_e(c.identity.env)}</a>' for c in card.scorecards
                          if c is not pick)
        page = scorecard_html(pick)
        return HTMLResponse(page.replace("<main>", "<main>" + nav + (f"<p>also: {others}</p>" if others else ""), 1))

    @app.get("/envs/{name}/{version}/scorecard.json", include_in_schema=False)
    async def version_json(name: str, version: str) -> Response:
        rec = index.record(index.resolve(name) or name, version)
        if rec is None or not rec.get("card"):
            return JSONResponse({"detail": f"no scorecard of {name} {version} on this hub"}, 404)
        return JSONResponse(rec["card"])

    @app.get("/envs/{name}/{version}/scorecard.md", include_in_schema=False)
    async def version_md(name: str, version: str) -> Response:
        rec = index.record(index.resolve(name) or name, version)
        if rec is None or not rec.get("card"):
            return PlainTextResponse(f"no scorecard of {name} {version} on this hub", 404)
        card = PackageCard.model_validate(rec["card"])
        return PlainTextResponse("\n".join(markdown(c) for c in card.scorecards), media_type="text/markdown")

    app.mount("/", _ReadOnly(WSGIMiddleware(pypi), PlainTextResponse))
    return _SimpleJson(app, backend, JSONResponse, PlainTextResponse, canonicalize_name)


class _SimpleJson:
    """PEP 691: ``/simple/`` and ``/simple/NAME/`` as JSON for a client that prefers it (pip does), from
    pypiserver's backend (the files and sha256 its HTML lists); everything else passes on."""

    def __init__(self, app: Any, backend: Any, json_response: Any, text_response: Any, canonicalize: Any) -> None:
        self.app, self.backend, self.canon = app, backend, canonicalize
        self.json, self.text = json_response, text_response

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        m = re.fullmatch(r"/simple/(?:([^/]+)/)?", path)
        if m is None or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope.get("headers", [])}
        query = dict(x.partition("=")[::2] for x in scope.get("query_string", b"").decode("latin1").split("&") if x)
        from urllib.parse import unquote

        if not _prefers_json(headers.get("accept", ""), unquote(query["format"]) if "format" in query else None):
            await self.app(scope, receive, send)
            return
        await self._answer(m.group(1))(scope, receive, send)

    def _answer(self, project: str | None) -> Any:
        if project is None:
            names = sorted({str(p.pkgname) for p in self.backend.get_all_packages()}, key=str.lower)
            return self.json({"meta": {"api-version": "1.0"}, "projects": [{"name": n} for n in names]},
                             media_type=JSON_TYPE)
        norm = self.canon(project)
        if project != norm:
            return self.text("", 301, headers={"Location": f"../{norm}/"})
        pkgs = sorted(self.backend.find_project_packages(project), key=lambda x: (x.parsed_version, x.relfn))
        if not pkgs:
            return self.text(f"Not Found ({norm} does not exist)", 404)
        files = []
        for p in pkgs:
            algo, _, hexd = (self.backend.digest(p) or "").partition("=")
            files.append({"filename": Path(p.relfn).name, "url": f"../../packages/{p.relfn_unix}",
                          "hashes": {algo: hexd} if hexd else {}})
        return self.json({"meta": {"api-version": "1.0"}, "name": norm, "files": files}, media_type=JSON_TYPE)


class _ReadOnly:
    """pypiserver for GET and HEAD only: uploads go through envfoundry's route (token, never replaced)."""

    def __init__(self, app: Any, text: Any) -> None:
        self.app, self.text = app, text

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            await self.text("the index is read-only; upload with POST / (the legacy upload API, as twine does)",
                            405)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _package_entry(index: HubIndex, name: str, full: bool = False) -> dict[str, Any]:
    versions = index.versions(name)
    display = versions[-1]["package"] if versions else name
    return {"package": display, "name": name, "versions": [
        {"version": r["version"], "filename": r["filename"], "sha256": r["sha256"], "uploaded_at": r["uploaded_at"],
         "summary": summary(r.get("card")), **({"card": r.get("card")} if full else {})} for r in versions]}


def serve(root: Path | str, *, host: str, port: int, token: str, on_ready: Any = None, log_level: str = "warning"
          ) -> None:
    """Serve the hub until interrupted; ``on_ready(url)`` is called once it listens (port 0: a free port)."""
    import socket

    import uvicorn

    app = create_app(root, token)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        from ..core.errors import UsageError

        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    bound = sock.getsockname()[1]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
    config = uvicorn.Config(app, log_level=log_level, lifespan="off")
    server = uvicorn.Server(config)

    if on_ready is not None:
        on_ready(url)
    server.run(sockets=[sock])


__all__ = ["create_app", "serve", "summary"]
