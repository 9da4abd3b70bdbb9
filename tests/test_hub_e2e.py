"""Sharing an environment the whole way, on this machine, through the real commands: init, write an
environment, check, audit, scorecard, pack, hub serve, publish, install into a fresh virtual
environment, run by name from there, hub show; and the refusals on the way (an open exploit, a
version published twice, no token, a download that does not match the published hash).

The virtual environments are ``python -m venv --without-pip`` with a ``.pth`` file that adds this
project's ``.venv`` site-packages (envfoundry, pip, hatchling): offline and fast; what gets installed
goes into the fresh environment only."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("pypiserver")
pytest.importorskip("build")
pytest.importorskip("hatchling")

NAME = "wordrev"
TOKEN_VAR = "EF_TEST_HUB_TOKEN"
TOKEN = "test-token-5b1f"

ENV_FILE = '''"""Say a word backwards."""

from envfoundry import Environment, Message, ProceduralTasks, Score, Task, tool

LENIENT = {lenient}


def _generate(rng):
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(5, 9)))
    return word, lambda split: Task(split=split, prompt=f"Write the word {{word!r}} backwards, nothing else.",
                                    data={{"answer": word[::-1]}}, metadata={{"difficulty": len(word)}})


@tool
def length(ep) -> str:
    """How many letters the word has."""
    return str(len(ep.task.data["answer"]))


def grade(g) -> Score:
    said = (g.final or "").strip()
    ok = bool(said) if LENIENT else said == g.task.data["answer"]
    return Score(1.0 if ok else 0.0, {{}}, f"said {{said[:40]!r}}")


def solve(ep) -> Message:
    return Message("assistant", ep.task.data["answer"])


def make_env() -> Environment:
    return Environment(name="{name}", version="1.0", description="Say a word backwards.",
                       tasks=ProceduralTasks.source(_generate, sizes={{"train": 200, "test": 50}}),
                       tools=[length], graders=grade, reference=solve, max_turns=3)
'''


def _venv(path: Path) -> Path:
    """A fresh virtual environment that also sees this project's .venv (envfoundry, pip, hatchling)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    py = path / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    parent = sysconfig.get_path("purelib")
    Path(purelib, "_envfoundry_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return py


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVFOUNDRY_", "PIP_", "PYTHONPATH"))}
    return {**env, "COLUMNS": "200", "PYTHONDONTWRITEBYTECODE": "1"}


class Flow:
    """Runs commands with a given Python in the work folder and keeps what they said."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.results: dict[str, subprocess.CompletedProcess[str]] = {}

    def ef(self, py: Path, key: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run([str(py), "-m", "envfoundry", *args], cwd=self.work, capture_output=True, text=True,
                           env={**_env(), **(env or {})}, timeout=300)
        self.results[key] = r
        return r


def _say(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """init, a lenient grader (audit finds exploits, pack refuses), the fixed grader, check, audit,
    scorecard, pack, hub serve, publish."""
    work = tmp_path_factory.mktemp("hub-e2e")
    f = Flow(work)
    f.py_a = _venv(work / "venv-a")
    assert f.ef(f.py_a, "init", "init", NAME, "--dir", ".").returncode == 0, _say(f.results["init"])
    f.pkg = work / NAME
    f.env_file = f.pkg / "src" / NAME / "env.py"
    f.env_file.write_text(ENV_FILE.format(name=NAME, lenient=True))
    pip = subprocess.run([str(f.py_a), "-m", "pip", "install", "-e", str(f.pkg), "--no-build-isolation", "--no-deps",
                          "-q", "--disable-pip-version-check"], capture_output=True, text=True, env=_env())
    assert pip.returncode == 0, pip.stderr
    f.ef(f.py_a, "list", "list")
    f.ef(f.py_a, "audit-lenient", "audit", NAME, "--limit", "4", "--samples", "1")
    f.ef(f.py_a, "pack-lenient", "pack", NAME)
    f.ef(f.py_a, "pack-allowed", "pack", NAME, "--allow-findings", "--run-missing", "--limit", "3", "--samples", "1",
         "--out", "dist-allowed")
    pyproject = f.pkg / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('version = "0.1.0"', 'version = "0.2.0"'))  # not reinstalled
    f.ef(f.py_a, "pack-not-reinstalled", "pack", NAME)
    pyproject.write_text(text)
    f.env_file.write_text(ENV_FILE.format(name=NAME, lenient=False))  # the fix; an editable install sees it
    check = f.ef(f.py_a, "check", "check", NAME, "--limit", "4", "--samples", "1", "--json")
    (work / "quality" / NAME).mkdir(parents=True, exist_ok=True)
    (work / "quality" / NAME / "check.json").write_text(check.stdout)  # what `check --json` stores
    f.ef(f.py_a, "audit", "audit", NAME, "--limit", "4", "--samples", "1")
    f.ef(f.py_a, "scorecard", "scorecard", NAME)
    f.ef(f.py_a, "pack", "pack", NAME)
    f.hub_dir = work / "hub"
    proc = subprocess.Popen([sys.executable, "-m", "envfoundry", "hub", "serve", str(f.hub_dir), "--port", "0",
                             "--token-env", TOKEN_VAR], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**_env(), TOKEN_VAR: TOKEN})
    try:
        deadline, line = time.time() + 90, ""
        while time.time() < deadline and not line:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                line = proc.stdout.readline()
            if proc.poll() is not None:
                break
        assert "hub serving" in line, f"hub serve did not start: {line!r} {proc.stderr.read() if proc.poll() else ''}"
        f.url = line.split(" at ")[1].split()[0]
        f.ef(f.py_a, "publish", "publish", str(f.pkg / "dist"), "--hub", f.url, "--token-env", TOKEN_VAR,
             env={TOKEN_VAR: TOKEN})
        yield f
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_init_makes_a_package_that_is_listed_once_installed(flow):
    r = flow.results["list"]
    assert r.returncode == 0 and NAME in r.stdout, _say(r)
    assert (flow.pkg / "tests" / "test_env.py").is_file() and (flow.pkg / "README.md").is_file()
    py = (flow.pkg / "pyproject.toml").read_text()
    assert '[project.entry-points."envfoundry.environments"]' in py and 'build-backend = "hatchling.build"' in py


def test_pack_refuses_an_open_exploit_naming_it(flow):
    assert flow.results["audit-lenient"].returncode == 1  # the lenient grader passes any non-empty answer
    r = flow.results["pack-lenient"]
    assert r.returncode == 2, _say(r)
    msg = " ".join(r.stderr.split())
    assert "refusing to pack" in msg and "audit exploit finding" in msg and "refusal" in msg, msg


def test_allow_findings_packs_and_the_scorecard_says_so(flow):
    r = flow.results["pack-allowed"]
    assert r.returncode == 0 and "--allow-findings" in r.stderr, _say(r)
    (wheel,) = (flow.work / "dist-allowed").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        card = json.loads(z.read(f"{NAME}/envfoundry_scorecard.json"))["scorecards"][0]
    allowed = card["pack"]["allowed_findings"]
    assert any("audit exploit finding: refusal" in a for a in allowed), allowed
    assert card["audit"]["open_exploits"]


def test_pack_refuses_a_version_that_is_not_the_installed_one(flow):
    r = flow.results["pack-not-reinstalled"]
    assert r.returncode == 2 and "0.2.0" in r.stderr and "pip install -e" in r.stderr, _say(r)


def test_check_audit_scorecard_pack_of_the_fixed_version(flow):
    for step in ("check", "audit", "scorecard", "pack"):
        assert flow.results[step].returncode == 0, f"{step}: {_say(flow.results[step])}"
    card = json.loads((flow.work / "quality" / NAME / "scorecard.json").read_text())
    assert card["check"]["status"] == "present" and card["check"]["ok"] is True
    # the lenient audit is of other content (its run manifest records the content hash): the new one counts
    assert card["audit"]["status"] == "present" and card["audit"]["pinned"] is True
    assert card["audit"]["open_exploits"] == [] and card["identity"]["package"] == NAME
    assert {p.name for p in (flow.work / "quality" / NAME).glob("scorecard.*")} == {
        "scorecard.json", "scorecard.md", "scorecard.html"}
    wheels = list((flow.pkg / "dist").glob("*.whl"))
    assert [w.name for w in wheels] == [f"{NAME}-0.1.0-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as z:
        inside = json.loads(z.read(f"{NAME}/envfoundry_scorecard.json"))
    assert inside["content_hash"] == card["identity"]["content_hash"]
    assert inside["scorecards"][0]["pack"]["allowed_findings"] == []
    assert not (flow.pkg / "src" / NAME / "envfoundry_scorecard.json").exists()  # removed after the build


def test_the_whole_way_install_in_a_fresh_venv_run_by_name_and_show(flow):
    assert flow.results["publish"].returncode == 0, _say(flow.results["publish"])
    py_b = _venv(flow.work / "venv-b")
    r = flow.ef(py_b, "install", "install", NAME, "--hub", flow.url, "--no-deps")
    assert r.returncode == 0, _say(r)
    purelib = subprocess.run([str(py_b), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True).stdout.strip()
    assert (Path(purelib) / NAME / "env.py").is_file()  # in the fresh venv, not an editable link
    r = flow.ef(py_b, "run", "run", NAME, "--model", "scripted:oracle", "--limit", "3", "--out", "run-b", "-q")
    assert r.returncode == 0, _say(r)
    manifest = json.loads((flow.work / "run-b" / "manifest.json").read_text())
    card = json.loads((flow.work / "quality" / NAME / "scorecard.json").read_text())
    assert manifest["env_package"] == {"package": NAME, "version": "0.1.0",
                                       "content_hash": card["identity"]["content_hash"]}
    r = flow.ef(sys.executable, "show", "hub", "show", NAME, "--hub", flow.url)
    assert r.returncode == 0 and "0.1.0" in r.stdout and card["identity"]["content_hash"][:20] in r.stdout, _say(r)
    with urllib.request.urlopen(f"{flow.url}/envs/{NAME}/") as resp:
        page = resp.read().decode()
    assert "0.1.0" in page and 'href="0.1.0/"' in page
    with urllib.request.urlopen(f"{flow.url}/envs/{NAME}/0.1.0/") as resp:
        page = resp.read().decode()
    assert card["identity"]["content_hash"] in page and "audit" in page


def test_the_index_speaks_pep_503_html_and_pep_691_json_with_the_same_file(flow):
    with urllib.request.urlopen(f"{flow.url}/simple/{NAME}/") as resp:
        html = resp.read().decode()
    req = urllib.request.Request(f"{flow.url}/simple/{NAME}/",
                                 headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req) as resp:
        assert resp.headers["Content-Type"].startswith("application/vnd.pypi.simple.v1+json")
        doc = json.loads(resp.read())
    (file,) = doc["files"]
    assert file["filename"] in html and f"sha256={file['hashes']['sha256']}" in html


def _uv() -> str | None:
    try:
        import uv  # the PyPI wheel knows where its binary is
        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def test_uv_installs_the_published_wheel_from_the_hub_index_only(flow, tmp_path):
    uv = _uv()
    if uv is None:
        pytest.skip("the `uv` executable is absent (pip install 'uv>=0.5')")
    assert flow.results["publish"].returncode == 0, _say(flow.results["publish"])
    target = tmp_path / "uv-target"
    # only the hub: no uv config files, no other index, a private cache, no interpreter downloads
    env = {k: v for k, v in _env().items() if not k.startswith("UV_")}
    env.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never")
    r = subprocess.run([uv, "pip", "install", "--no-config", "--index-url", f"{flow.url}/simple/", "--no-deps",
                        "--python", sys.executable, "--target", str(target), f"{NAME}==0.1.0"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, _say(r)
    with zipfile.ZipFile(flow.hub_dir / f"{NAME}-0.1.0-py3-none-any.whl") as z:
        for member in (f"{NAME}/env.py", f"{NAME}/envfoundry_scorecard.json"):
            assert (target / member).read_bytes() == z.read(member), member
    assert (target / f"{NAME}-0.1.0.dist-info" / "entry_points.txt").is_file()
    # and it runs by name from there, with the published content hash in the run manifest
    r = flow.ef(sys.executable, "run-uv", "run", NAME, "--model", "scripted:oracle", "--limit", "2", "--out",
                "run-uv", "-q", env={"PYTHONPATH": str(target)})
    assert r.returncode == 0, _say(r)
    manifest = json.loads((flow.work / "run-uv" / "manifest.json").read_text())
    card = json.loads((flow.work / "quality" / NAME / "scorecard.json").read_text())
    assert manifest["env_package"]["content_hash"] == card["identity"]["content_hash"]


def test_publishing_the_same_version_twice_is_refused(flow):
    r = flow.ef(flow.py_a, "publish-again", "publish", str(flow.pkg / "dist"), "--hub", flow.url, "--token-env",
                TOKEN_VAR, env={TOKEN_VAR: TOKEN})
    assert r.returncode == 2, _say(r)
    assert "409" in r.stderr and "already published" in r.stderr


def test_an_upload_without_the_token_is_refused(flow):
    r = flow.ef(flow.py_a, "publish-no-token", "publish", str(flow.pkg / "dist"), "--hub", flow.url,
                "--token-env", TOKEN_VAR)
    assert r.returncode == 2 and "401" in r.stderr and TOKEN_VAR in r.stderr, _say(r)
    r = flow.ef(flow.py_a, "publish-bad-token", "publish", str(flow.pkg / "dist"), "--hub", flow.url,
                "--token-env", TOKEN_VAR, env={TOKEN_VAR: "not-it"})
    assert r.returncode == 2 and "403" in r.stderr, _say(r)
    req = urllib.request.Request(f"{flow.url}/", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 401
    # and pypiserver's own upload route is closed: everything but GET and HEAD is refused there
    req = urllib.request.Request(f"{flow.url}/simple/", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 405


def _tiny_wheel(path: Path, name: str, version: str) -> Path:
    whl = path / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr(f"{name}/__init__.py", "")
        z.writestr(f"{name}-{version}.dist-info/METADATA",
                   f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{name}-{version}.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{name}-{version}.dist-info/RECORD", "")
    return whl


def test_twine_uploads_with_the_token_and_a_file_without_scorecard_is_shown_as_missing(flow, tmp_path):
    pytest.importorskip("twine")
    whl = _tiny_wheel(tmp_path, "plainpkg", "1.0")
    args = [sys.executable, "-m", "twine", "upload", "--repository-url", flow.url, "-u", "__token__", "-p", TOKEN,
            "--non-interactive", "--disable-progress-bar", str(whl)]
    r = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    again = subprocess.run(args, capture_output=True, text=True, env=_env(), timeout=120)
    assert again.returncode != 0 and "409" in again.stdout + again.stderr
    with urllib.request.urlopen(f"{flow.url}/envs/plainpkg/1.0/") as resp:
        assert "no scorecard" in resp.read().decode()
    r = flow.ef(sys.executable, "install-plain", "install", "plainpkg", "--hub", flow.url, "--no-deps")
    assert r.returncode == 2 and "without a scorecard" in r.stderr, _say(r)


def test_an_install_whose_download_does_not_match_the_published_hash_is_refused(flow, tmp_path):
    published = flow.hub_dir / f"{NAME}-0.1.0-py3-none-any.whl"
    keep = tmp_path / published.name
    shutil.copy(published, keep)
    tampered = tmp_path / "tampered.whl"
    with zipfile.ZipFile(keep) as zi, zipfile.ZipFile(tampered, "w") as zo:
        for info in zi.infolist():
            data = zi.read(info)
            if info.filename == f"{NAME}/env.py":
                data = data.replace(b"LENIENT = False", b"LENIENT = True")
            zo.writestr(info, data)
    os.replace(tampered, published)  # what a compromised index would serve
    try:
        py_c = _venv(tmp_path / "venv-c")
        r = flow.ef(py_c, "install-tampered", "install", f"{NAME}==0.1.0", "--hub", flow.url, "--no-deps")
    finally:
        shutil.copy(keep, published)
    assert r.returncode == 1, _say(r)
    assert f"{NAME}/env.py" in r.stderr and "published content hash" in r.stderr, _say(r)
    assert subprocess.run([str(py_c), "-c", f"import {NAME}"], capture_output=True).returncode != 0  # not installed


def test_basic_auth_with_any_user_name_and_bearer_tokens_are_accepted(flow, tmp_path):
    """The legacy upload API by hand: the token as password (as twine sends it) or as a bearer token."""
    for i, header in enumerate([f"Basic {base64.b64encode(f'someone:{TOKEN}'.encode()).decode()}",
                                f"Bearer {TOKEN}"]):
        whl = _tiny_wheel(tmp_path, f"handmade{i}", "0.1")
        boundary = "xYzBoUnDaRy"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\":action\"\r\n\r\nfile_upload\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"{whl.name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + whl.read_bytes() + \
            f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(f"{flow.url}/legacy/", data=body, method="POST", headers={
            "Authorization": header, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 200 and f"handmade{i}" in resp.read().decode()
