"""``serve``: an environment over HTTP and WebSocket for trainers elsewhere (``--env http://HOST:PORT``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from . import vocabulary as V
from ._common import EnvArg, EnvArgOpt, EnvOpt, _env_args, _env_spec, _escape, app, console, err


@app.command("serve")
def serve_cmd(
    env: EnvArg = None,
    env_opt: EnvOpt = None,
    env_arg: EnvArgOpt = None,
    host: Annotated[str, typer.Option(help="address to listen on; another than loopback needs --allow-remote "
                                           "and --token-env")] = "127.0.0.1",
    port: Annotated[int, V._opt("--port", "port to listen on (0: a free one, printed)",
                                rng=V.Range(0, 65535))] = 8000,
    max_sessions: Annotated[int, V._opt("--max-sessions", "sessions open at once; one more gets 503 with "
                                        "Retry-After", rng=V.Range(1, 1_000_000))] = 1024,
    lease_s: Annotated[float, V._opt("--lease-s", "an HTTP session ends this many seconds after its last "
                                     "request (a WebSocket's ends with its connection)",
                                     rng=V.Range(0, 7 * 24 * 3600, open_lo=True))] = 300.0,
    token_env: Annotated[Optional[str], typer.Option(  # noqa: UP007
        "--token-env", help="environment variable holding the token every request must carry "
                            "(Authorization: Bearer TOKEN); clients read theirs from $ENVFOUNDRY_TOKEN")] = None,
    allow_remote: Annotated[bool, typer.Option("--allow-remote", metavar="",
                                               help="allow --host beyond loopback (needs --token-env)")] = False,
    threads: Annotated[int, V._opt("--env-threads", "worker threads for environment code (0: on the event "
                                   "loop, for environments that never block)", rng=V.Range(0, 1024))] = 8,
) -> None:
    """Serve ENV over HTTP and WebSocket: leased sessions, graded results, an OpenAPI description at /docs.
    Clients: `envfoundry run http://HOST:PORT ...`, envfoundry.connect(URL), or OpenEnv's WebSocket client."""
    from ..core.loading import canonical_spec, load
    from ..core.sanitize import register_secret
    from ..server import ServeConfig, serve, token_from_env

    spec = _env_spec(env, env_opt)
    token = token_from_env(token_env)
    register_secret(token)
    config = ServeConfig(spec=canonical_spec(spec), host=host, port=port, max_sessions=max_sessions,
                         lease_s=lease_s, threads=threads, token=token, allow_remote=allow_remote).check()
    environment = load(spec, _env_args(env_arg))

    def announce(url: str) -> None:
        console.print(f"serving {_escape(environment.name)} {_escape(environment.version)} at {url}", soft_wrap=True,
                      highlight=False)
        console.file.flush()  # the first line names the URL: a script that started the server reads it
        err.print(f"  {max_sessions} sessions at most, HTTP leases of {lease_s:g}s; OpenAPI at {url}/docs; "
                  f"{'token required' if token else 'no token'}; Ctrl-C stops", soft_wrap=True, highlight=False)

    serve(environment, config, announce=announce)
