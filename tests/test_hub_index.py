"""The hub's rules for uploads, in process: a version is published once (any spelling of its name
and version, any file name), a wheel's files must match the scorecard it carries, bad files are
refused with what is wrong; and the app's token check and PEP 691 negotiation."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("pypiserver")

from envfoundry.core.provenance import SCORECARD_FILE, content_hash  # noqa: E402
from envfoundry.hub.index import HubIndex, Upload, UploadRefused  # noqa: E402
from envfoundry.hub.model import PackageCard  # noqa: E402
from envfoundry.hub.server import _prefers_json, create_app  # noqa: E402

from .conftest import ROOT  # noqa: E402

TOKEN = "tok-123"


@pytest.fixture(scope="module")
def scorecard():
    from envfoundry.hub.scorecard import build_scorecard

    return build_scorecard(str(ROOT / "examples" / "counter_env.py") + ":make_env")


def wheel(name: str, version: str, *, files: dict[str, bytes] | None = None, card: object = None,
          meta_name: str | None = None, meta_version: str | None = None, tag: str = "py3-none-any",
          build: str = "") -> tuple[str, bytes]:
    files = files if files is not None else {"env.py": b"X = 1\n"}
    top = name.replace("-", "_").lower()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for rel, data in files.items():
            z.writestr(f"{top}/{rel}", data)
        if card is not None:
            z.writestr(f"{top}/{SCORECARD_FILE}", card if isinstance(card, (bytes, str)) else card.model_dump_json())
        dist = f"{top}-{version}.dist-info"
        z.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {meta_name or name}\n"
                                       f"Version: {meta_version or version}\n")
        z.writestr(f"{dist}/WHEEL", f"Wheel-Version: 1.0\nTag: {tag}\n")
    fname = f"{top}-{version}{'-' + build if build else ''}-{tag}.whl"
    return fname, buf.getvalue()


def card_for(scorecard, name: str, version: str, files: dict[str, bytes]) -> PackageCard:
    hashes = {k: hashlib.sha256(v).hexdigest() for k, v in sorted(files.items())}
    return PackageCard(package=name, version=version, root=name.replace("-", "_").lower() + "/",
                       content_hash=content_hash(hashes), files=hashes, scorecards=[scorecard])


def test_a_version_is_published_once_whatever_its_spelling(tmp_path, scorecard):
    idx = HubIndex(tmp_path)
    files = {"env.py": b"X = 1\n", "data/a.json": b"{}"}
    fname, data = wheel("word-rev", "1.0", files=files, card=card_for(scorecard, "word-rev", "1.0", files))
    rec = idx.publish(Upload(fname, data, sha256_digest=hashlib.sha256(data).hexdigest()))
    assert rec["card"]["content_hash"] and (tmp_path / fname).read_bytes() == data
    for again in [wheel("word-rev", "1.0"), wheel("word-rev", "1.0.0"), wheel("Word_Rev", "1.0"),
                  wheel("word-rev", "1.0", build="1"), wheel("word-rev", "1.0", tag="py311-none-any")]:
        with pytest.raises(UploadRefused) as e:
            idx.publish(Upload(*again))
        assert e.value.status == 409 and "already published" in str(e.value), again[0]
    assert (tmp_path / fname).read_bytes() == data  # never replaced
    assert idx.publish(Upload(*wheel("word-rev", "1.1")))["version"] == "1.1"
    assert [r["version"] for r in idx.versions("WORD.rev")] == ["1.0", "1.1"]
    assert idx.resolve("counter") == "word-rev"  # the environment's name finds its package
    assert idx.resolve("nothing-here") is None


def test_a_wheel_whose_files_do_not_match_its_scorecard_is_refused_naming_them(tmp_path, scorecard):
    files = {"env.py": b"X = 1\n", "util.py": b"Y = 2\n"}
    card = card_for(scorecard, "pkg", "2.0", files)
    changed = {"env.py": b"X = 666\n", "util.py": b"Y = 2\n", "extra.py": b""}
    with pytest.raises(UploadRefused) as e:
        HubIndex(tmp_path).publish(Upload(*wheel("pkg", "2.0", files=changed, card=card)))
    assert e.value.status == 400 and "pkg/env.py" in str(e.value) and "pkg/extra.py" in str(e.value)
    with pytest.raises(UploadRefused) as e:  # a scorecard of another version
        HubIndex(tmp_path).publish(Upload(*wheel("pkg", "2.1", files=files, card=card)))
    assert e.value.status == 400 and "2.0" in str(e.value)
    with pytest.raises(UploadRefused) as e:  # not a scorecard at all
        HubIndex(tmp_path).publish(Upload(*wheel("pkg", "2.0", files=files, card=b"{\"format\": 1}")))
    assert e.value.status == 400 and "not a scorecard" in str(e.value)
    assert not list(tmp_path.glob("*.whl"))


@pytest.mark.parametrize("upload,says", [
    (Upload("../evil-1.0-py3-none-any.whl", b"x"), "bad file name"),
    (Upload("notes.txt", b"x"), "not a wheel or sdist"),
    (Upload("pkg-1.0-py3-none-any.whl", b"not a zip"), "not a zip"),
    (Upload(*wheel("pkg", "1.0", meta_name="other")), "METADATA says other"),
    (Upload(*wheel("pkg", "1.0", meta_version="9.9")), "METADATA says"),
    (Upload(*wheel("pkg", "1.0"), sha256_digest="0" * 64), "damaged"),
    (Upload(*wheel("pkg", "1.0"), name="another"), "the form says project"),
])
def test_bad_uploads_are_refused_saying_why(tmp_path, upload, says):
    with pytest.raises(UploadRefused) as e:
        HubIndex(tmp_path).publish(upload)
    assert e.value.status == 400 and says in str(e.value)
    assert not [p for p in tmp_path.iterdir() if p.name != ".envfoundry"]


def test_pep_691_is_chosen_by_the_clients_preference():
    pip = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
    assert _prefers_json(pip, None)
    assert not _prefers_json("text/html", None) and not _prefers_json("", None)
    assert not _prefers_json("application/vnd.pypi.simple.v1+json; q=0.1, text/html", None)
    assert _prefers_json("text/html", "application/vnd.pypi.simple.v1+json")


def test_the_app_checks_the_token_and_serves_pages(tmp_path, scorecard):
    from fastapi.testclient import TestClient

    files = {"env.py": b"X = 1\n"}
    fname, data = wheel("pkg", "1.0", files=files, card=card_for(scorecard, "pkg", "1.0", files))
    client = TestClient(create_app(tmp_path, TOKEN))
    form = {":action": "file_upload"}
    upload = {"content": (fname, data, "application/octet-stream")}
    assert client.post("/", data=form, files=upload).status_code == 401
    bad = base64.b64encode(b"__token__:nope").decode()
    assert client.post("/", data=form, files=upload, headers={"Authorization": f"Basic {bad}"}).status_code == 403
    good = {"Authorization": f"Basic {base64.b64encode(f'__token__:{TOKEN}'.encode()).decode()}"}
    r = client.post("/", data={":action": "remove_pkg"}, files=upload, headers=good)
    assert r.status_code == 400 and "only file_upload" in r.text
    r = client.post("/", data=form, files=upload, headers=good)
    assert r.status_code == 200 and "published pkg 1.0" in r.text
    assert client.post("/", data=form, files=upload, headers=good).status_code == 409
    page = client.get("/envs/pkg/").text
    assert "1.0" in page and 'href="1.0/"' in page
    assert scorecard.identity.content_hash in client.get("/envs/pkg/1.0/").text
    assert client.get("/envs/counter/1.0/").status_code == 200  # by the environment's name too
    assert client.get("/api/packages/pkg").json()["versions"][0]["summary"]["environments"] == ["counter"]
    assert client.get("/envs/pkg/9.9/").status_code == 404
    assert client.get("/api/packages/nope").status_code == 404
    simple = client.get("/simple/pkg/", headers={"Accept": "text/html"})
    assert simple.status_code == 200 and fname in simple.text  # pypiserver's HTML
    js = client.get("/simple/PKG/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                    follow_redirects=True).json()
    assert js["name"] == "pkg" and js["files"][0]["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.delete("/packages/" + fname).status_code == 405  # the read side is read-only
    assert Path(tmp_path / fname).read_bytes() == data
