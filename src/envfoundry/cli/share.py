"""``init``, ``scorecard``, ``pack``, ``publish``, ``install`` and ``hub serve|list|show``: sharing environments."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.errors import UsageError
from . import vocabulary as V
from ._common import EnvArg, EnvArgOpt, EnvOpt, _env_args, _env_spec, _escape, app, console, err

hub_app = typer.Typer(help="The package index of environments: serve it, list it, show a package's versions.",
                      no_args_is_help=True)
app.add_typer(hub_app, name="hub")

HubUrl = Annotated[str, typer.Option("--hub", envvar="ENVFOUNDRY_HUB",
                                     help="the hub's URL, e.g. http://127.0.0.1:8700 (or $ENVFOUNDRY_HUB)")]
TokenEnv = Annotated[str, typer.Option("--token-env", help="environment variable holding the hub's upload token")]
From = Annotated[Optional[list[Path]], typer.Option(
    "--from", help="folder of stored check/audit/calibrate/agree results, searched two levels down (repeatable; "
    "default: quality/ENV)")]
RunMissing = Annotated[bool, typer.Option("--run-missing", metavar="", help="run check and audit (scripted probes) "
                                          "when theirs are missing or stale, and store them")]
PartLimit = Annotated[Optional[int], V._opt("--limit", "tasks for the check and audit that --run-missing runs "
                                            "(default: theirs, 20 and 30)")]
PartSamples = Annotated[Optional[int], V._opt("--samples", "rollouts per task for those (default: 2)")]


def _token_env_default() -> str:
    from ..hub.client import DEFAULT_TOKEN_ENV

    return DEFAULT_TOKEN_ENV


def _step(msg: str) -> None:
    err.print(_escape(msg), soft_wrap=True)


@app.command("init")
def init_cmd(
    name: Annotated[str, typer.Argument(help="the environment's name (also the package's)")],
    directory: Annotated[Path, typer.Option("--dir", help="where to make the package folder NAME")] = Path("."),
    module: Annotated[Optional[str], typer.Option(help="the Python package's name (default: NAME with _)")] = None,
    description: Annotated[Optional[str], typer.Option(help="one line on what the environment is")] = None,
) -> None:
    """Make an environment package: pyproject.toml (entry point envfoundry.environments), the environment, a test
    that runs check on it, a README. `pip install -e NAME` makes it known by name."""
    from ..hub.scaffold import scaffold

    dest = scaffold(name, directory, module=module, description=description)
    console.print(f"made the environment package [bold]{_escape(str(dest))}[/bold]; next:")
    console.print(f"  pip install -e {_escape(str(dest))}   # then: envfoundry list, envfoundry run {_escape(name)} "
                  "--model scripted:oracle", soft_wrap=True)


@app.command("scorecard")
def scorecard_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    env_arg: EnvArgOpt = None,
    out: Annotated[Optional[Path], V._opt("--out", "folder for scorecard.json, .md, .html (default: quality/ENV)")
                   ] = None,
    sources: From = None,
    run_missing: RunMissing = False,
    limit: PartLimit = None,
    samples: PartSamples = None,
    seed: V.Seed = None,
    json_out: V.Json = False,
) -> None:
    """Everything known about one version of ENV in one document (JSON, Markdown, HTML): identity and content
    hash, tasks, check, audit, calibration, grader agreement, each with the command that reproduces it."""
    import json

    from ..hub.scorecard import ScorecardOptions, build_scorecard, write_scorecard

    spec = _env_spec(env, env_opt)
    card = build_scorecard(spec, ScorecardOptions(
        sources=sources or (), run_missing=run_missing, limit=limit, samples=samples, seed=seed,
        env_args=_env_args(env_arg), on_step=None if json_out else _step))
    paths = write_scorecard(card, out if out is not None else Path("quality") / card.identity.env)
    if json_out:
        print(json.dumps(card.model_dump(mode="json"), indent=2))
        return
    _print_card(card)
    console.print("wrote " + ", ".join(f"[bold]{_escape(str(p))}[/bold]" for p in paths.values()), soft_wrap=True)


def _print_card(card) -> None:  # noqa: ANN001
    from rich.table import Table

    from ..hub.render import STATUS_TEXT, fmt

    i = card.identity
    t = Table(title=_escape(f"scorecard {i.env} {i.env_version}"), title_justify="left", show_header=False)
    t.add_column(style="bold", overflow="fold")
    t.add_column(overflow="fold")
    t.add_row("package", _escape(f"{i.package} {i.package_version}" if i.package
                             else "(a folder)" if i.root.endswith("/") else "(a file)"))
    t.add_row("content hash", i.content_hash)
    t.add_row("tasks", ", ".join(f"{s} {n:,}" for s, n in card.splits.items()))
    style = {"present": "green", "missing": "bold red", "stale": "yellow", "not_applicable": "dim"}
    for name in ("check", "audit", "calibration", "agreement"):
        part = getattr(card, name)
        detail = ""
        if name == "check" and part.status == "present":
            detail = f"{part.passed} passed, {part.failed} failed"
        elif name == "audit" and part.status == "present":
            n = sum(part.findings_by_severity.values())
            kill, keep = fmt(part.mutation_kill_rate, "pct"), fmt(part.mutation_preservation_rate, "pct")
            detail = f"{n} finding(s), {len(part.open_exploits)} exploit(s); mutation kill {kill}, preservation {keep}"
        elif name == "calibration" and part.status == "present":
            detail = ", ".join(m.model for m in part.models)
        note = f" ({part.note})" if part.note and part.status != "present" else ""
        t.add_row(name, f"[{style[part.status]}]{STATUS_TEXT[part.status]}[/] {_escape(detail + note)}")
    console.print(t)


@app.command("pack")
def pack_cmd(
    directory: Annotated[Path, typer.Argument(help="the environment package's folder (pyproject.toml)")] = Path("."),
    out: Annotated[Optional[Path], V._opt("--out", "where the wheel goes (default: DIR/dist)")] = None,
    sources: From = None,
    allow_findings: Annotated[bool, typer.Option("--allow-findings", metavar="", help="pack even with a failing "
                                                 "check or an open exploit finding (the scorecard says so)")] = False,
    run_missing: RunMissing = False,
    isolated: Annotated[bool, typer.Option("--isolated", metavar="", help="build in an isolated environment "
                                           "(downloads the build backend)")] = False,
    limit: PartLimit = None,
    samples: PartSamples = None,
    seed: V.Seed = None,
) -> None:
    """Build a wheel of an environment package with its scorecard inside (the project's build backend via
    `build`). Refused, naming why, when a check fails or the audit has an exploit finding."""
    from ..hub.pack import PackOptions, pack

    packed = pack(directory, PackOptions(out=out, sources=sources or (), allow_findings=allow_findings,
                                         run_missing=run_missing, isolated=isolated, limit=limit, samples=samples,
                                         seed=seed, on_step=_step))
    allowed = [f for c in packed.card.scorecards for f in (c.pack.allowed_findings if c.pack else [])]
    for f in allowed:
        err.print(f"[yellow]warning:[/yellow] packed with {_escape(f)} (--allow-findings; the scorecard says so)",
                  soft_wrap=True)
    console.print(f"packed [bold]{_escape(str(packed.wheel))}[/bold] ({_escape(packed.card.package)} "
                  f"{_escape(packed.card.version)}, content hash {packed.card.content_hash})", soft_wrap=True)


@app.command("publish")
def publish_cmd(
    dist: Annotated[Optional[Path], typer.Argument(help="the wheel, or a folder holding it (default: ./dist)")] = None,
    hub: HubUrl = "",
    token_env: TokenEnv = "",
) -> None:
    """Upload a packed environment to a hub (the legacy upload API: `twine upload --repository-url HUB` works
    too). A published version is never replaced (exit 2)."""
    from ..core.sanitize import register_secret
    from ..hub.client import find_dist, publish

    token_env = token_env or _token_env_default()
    token = os.environ.get(token_env) or None
    register_secret(token)
    path = find_dist(dist)
    answer = publish(path, hub, token, token_env=token_env)
    console.print(_escape(answer))


@app.command("install")
def install_cmd(
    requirement: Annotated[str, typer.Argument(help="NAME or NAME==VERSION (a package, or an environment's name)")],
    hub: HubUrl = "",
    python: Annotated[Optional[str], typer.Option(help="the Python whose environment gets it (default: this one)")
                      ] = None,
    no_deps: Annotated[bool, typer.Option("--no-deps", metavar="", help="install no dependencies (offline: "
                                          "they must be there already)")] = False,
) -> None:
    """Install an environment from a hub with pip, checking the downloaded and the installed files against the
    published scorecard's content hash (exit 1, naming the file, when they differ)."""
    from ..hub.client import install

    done = install(requirement, hub, python=python, no_deps=no_deps, on_step=_step)
    console.print(f"installed [bold]{_escape(done['package'])} {_escape(done['version'])}[/bold] "
                  f"({', '.join(done['environments'])}; content hash {done['content_hash']} checked)", soft_wrap=True)


@hub_app.command("serve")
def hub_serve_cmd(
    directory: Annotated[Path, typer.Argument(help="the folder that holds the published files")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, V._opt("--port", "port (0: a free one, printed)", rng=V.Range(0, 65535))] = 8700,
    token_env: TokenEnv = "",
) -> None:
    """Serve a package index (pypiserver: the simple API pip and uv install from) with token-checked uploads that
    never replace a version, and a page per environment with its versions and scorecards."""
    from ..hub.server import serve

    token_env = token_env or _token_env_default()
    token = os.environ.get(token_env)
    if not token:
        raise UsageError(f"hub serve needs an upload token: set {token_env} (or name another variable with "
                         "--token-env)")
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{str(directory)!r} is not a folder")

    def ready(url: str) -> None:
        print(f"hub serving {directory} at {url} (pip: --index-url {url}/simple/)", flush=True)

    serve(directory, host=host, port=port, token=token, on_ready=ready)


@hub_app.command("list")
def hub_list_cmd(hub: HubUrl = "", json_out: V.Json = False) -> None:
    """The packages on a hub, each with its newest version."""
    import json

    from rich.table import Table

    from ..hub.client import get_json

    data = get_json(hub, "/api/packages")
    if json_out:
        print(json.dumps(data, indent=2))
        return
    t = Table(title=f"hub {_escape(hub)}", title_justify="left")
    for c in ("package", "latest", "environments", "versions"):
        t.add_column(c, overflow="fold")
    for e in data:
        latest = e["versions"][-1] if e["versions"] else {}
        envs = ", ".join(latest.get("summary", {}).get("environments", []))
        t.add_row(_escape(e["package"]), _escape(latest.get("version", "")), _escape(envs), str(len(e["versions"])))
    console.print(t)


@hub_app.command("show")
def hub_show_cmd(
    name: Annotated[str, typer.Argument(help="a package (or an environment's name)")],
    hub: HubUrl = "",
    json_out: V.Json = False,
) -> None:
    """A package's published versions with their scorecards (check, audit, calibration) and page URLs."""
    import json

    from rich.table import Table

    from ..hub.client import get_json, hub_base

    data = get_json(hub, f"/api/packages/{name}", missing=f"no package or environment {name!r} on the hub {hub}")
    if json_out:
        print(json.dumps(data, indent=2))
        return
    base = hub_base(hub)
    t = Table(title=_escape(f"{data['package']} on {base}"), title_justify="left")
    for c in ("version", "scorecard", "check", "audit", "calibration", "page"):
        t.add_column(c, overflow="fold")
    for v in reversed(data["versions"]):
        card = v.get("card")
        if not card:
            t.add_row(_escape(v["version"]), "[red]none[/red]", "", "", "", "")
            continue
        for sc in card["scorecards"]:
            c, a = sc["check"], sc["audit"]
            check = c["status"] if c["status"] != "present" else (f"pass ({c['passed']})" if c["ok"]
                                                                  else f"FAIL ({c['failed']})")
            audit = a["status"] if a["status"] != "present" else (
                f"{sum(a['findings_by_severity'].values())} finding(s), {len(a['open_exploits'])} exploit(s)")
            if (sc.get("pack") or {}).get("allowed_findings"):
                audit += " [red](packed with open findings)[/red]"
            cal = ", ".join(m["model"] for m in sc["calibration"]["models"]) or sc["calibration"]["status"]
            t.add_row(_escape(v["version"]), _escape(f"{sc['identity']['env']} {sc['identity']['content_hash']}"),
                      _escape(check), audit, _escape(cal), f"{base}/envs/{data['name']}/{v['version']}/")
    console.print(t)
