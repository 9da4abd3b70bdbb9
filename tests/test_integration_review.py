"""Integration review across serve/connect, declarative folders, the scorecard and the hub client: cases
where the parts meet (a served run resumed after its server moved, a scorecard of a folder) and bad input
that must be one clear line with exit 2, never a traceback."""

import http.server
import json
import shutil
import threading

import pytest

import envfoundry
from envfoundry.cli import main
from envfoundry.core.errors import EnvLoadError, UsageError
from tests.conftest import ROOT
from tests.test_serve import start_server, stop

INVENTORY = ROOT / "examples" / "inventory"


@pytest.fixture(scope="module")
def served():
    """examples/inventory served by `envfoundry serve FOLDER`."""
    p, url = start_server(str(INVENTORY))
    yield url
    stop(p)


@pytest.fixture(scope="module")
def not_envfoundry():
    """A plain HTTP server that is not an environment server: /info answers `{}`, /html/info a web page."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            html = self.path.startswith("/html")
            body, kind = (b"<html>hi</html>", "text/html") if html else (b"{}", "application/json")
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_served_run_resumes_at_the_servers_new_url(served, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", served, "--model", "scripted:oracle", "--limit", "2", "--samples", "2", "--out", str(out),
                 "-q"]) == 0
    # as if the server had listened on another port when the run began and was killed after one rollout
    m = json.loads((out / "manifest.json").read_text())
    m["env_spec"] = "http://127.0.0.1:1"
    (out / "manifest.json").write_text(json.dumps(m))
    recs = (out / "trajectories.jsonl").read_text().splitlines()
    (out / "trajectories.jsonl").write_text(recs[0] + "\n")
    (out / "summary.json").unlink()
    capsys.readouterr()

    assert main(["run", "--out", str(out), "--resume", "-q"]) == 1  # the stored URL is dead: say what to do
    line = _one_line_error(capsys)
    assert "http://127.0.0.1:1" in line and "give it" in line and "--resume" in line

    assert main(["run", served, "--out", str(out), "--resume", "-q"]) == 0
    done = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
    assert sorted((r["task_id"], r["sample"]) for r in done) == sorted(
        (json.loads(x)["task_id"], json.loads(x)["sample"]) for x in recs)
    assert all(r["outcome"] == "completed" for r in done)

    # another environment at a new URL is still refused, naming both
    other = tmp_path / "other"
    shutil.copytree(INVENTORY, other)
    text = (other / "environment.yaml").read_text()
    (other / "environment.yaml").write_text(text.replace("name: inventory", "name: inventory2", 1))
    p, url2 = start_server(str(other))
    try:
        capsys.readouterr()
        assert main(["run", url2, "--out", str(out), "--resume", "-q"]) == 2
        assert "'inventory'" in _one_line_error(capsys)
    finally:
        stop(p)


def test_a_url_that_is_not_an_environment_server_is_bad_input(served, not_envfoundry, tmp_path, capsys):
    for url in (not_envfoundry, not_envfoundry + "/html", served + "/no/such/path"):
        with pytest.raises(EnvLoadError, match="is not an environment served by `envfoundry serve`"):
            envfoundry.load(url)
    for url in ("http://127.0.0.1:notaport", "http://127.0.0.1:99999", "http://:8000"):
        with pytest.raises(EnvLoadError, match="not an environment server URL"):
            envfoundry.load(url)
    capsys.readouterr()
    assert main(["run", not_envfoundry, "--model", "scripted:oracle", "--out", str(tmp_path / "r"), "-q"]) == 2
    assert "is not an environment served" in _one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_scorecard_of_a_folder_and_its_results_kept_inside_it(tmp_path, capsys, monkeypatch):
    from envfoundry.hub.scorecard import build_scorecard

    folder = tmp_path / "inv"
    shutil.copytree(INVENTORY, folder)
    monkeypatch.chdir(folder)
    assert main(["scorecard", ".", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    ident = first["identity"]
    assert ident["env"] == "inventory" and ident["root"] == "inv/" and ident["package"] is None
    assert "environment.yaml" in ident["files"]
    assert (folder / "quality" / "inventory" / "scorecard.json").is_file()  # written inside the folder...
    (folder / "runs" / "r").mkdir(parents=True)
    (folder / "runs" / "r" / "manifest.json").write_text("{}")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    again = build_scorecard(".").identity
    assert again.content_hash == ident["content_hash"]  # ...and outputs do not change what was scored
    (folder / "policy.md").write_text("changed")
    assert build_scorecard(".").identity.content_hash != ident["content_hash"]


def test_folders_that_are_not_environments_say_why(tmp_path, capsys, not_envfoundry):
    (tmp_path / "empty").mkdir()
    (tmp_path / "odd" / "environment.yaml").mkdir(parents=True)
    with pytest.raises(EnvLoadError, match="the folder holds no environment.yaml"):
        envfoundry.load(str(tmp_path / "empty"))
    with pytest.raises(EnvLoadError, match="environment.yaml is not a file"):
        envfoundry.load(str(tmp_path / "odd"))
    assert main(["scorecard", not_envfoundry.replace("127.0.0.1", "localhost")]) == 2  # not a served env either
    _one_line_error(capsys)
    from envfoundry.hub.identity import locate

    with pytest.raises(UsageError, match="served environment"):
        locate("http://127.0.0.1:8000")


def test_hub_url_with_a_bad_port_is_bad_input(capsys):
    for hub in ("http://127.0.0.1:notaport", "http://127.0.0.1:99999"):
        assert main(["install", "nosuch", "--hub", hub]) == 2
        assert "is not an http(s) URL" in _one_line_error(capsys)
