"""`envfoundry view` in a real Chromium (Playwright, the system's /usr/bin/chromium): runs made here
(shop with the oracle and the random policy, a hostile policy, an audit with a finding, a
calibration, a check), one server and one browser for the module. Asserts on what the pages show."""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from envfoundry import Message, evaluate, load
from envfoundry.core.messages import ToolCall
from envfoundry.core.policy import PolicyOutput
from tests.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the system's Chromium at /usr/bin/chromium "
                                "(Debian package `chromium`) for the browser tests")
XSS = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
SHOT = ROOT / "docs" / "images" / "trajectory.png"


class Hostile:
    """A policy whose every word is markup: a message, a tool name and arguments that would run script."""

    name = "hostile"

    async def act(self, ep):  # noqa: ANN001, ANN201
        if not any(m.role == "assistant" for m in ep.messages):
            return PolicyOutput(Message("assistant", XSS, [ToolCall(name=XSS, arguments={"q": XSS}, id="x1")]))
        return PolicyOutput(Message("assistant", "done " + XSS))

    def describe(self) -> dict:
        return {"spec": "test:<b>hostile</b>"}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns,
                                       hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from envfoundry.quality import AuditConfig, CalibrateConfig, CheckConfig, audit_env, calibrate, check_env
    from tests.envs import hackable

    base = tmp_path_factory.mktemp("view")
    root = base / "served"
    runs = root / "runs"
    for name, model in (("shop-oracle", "scripted:oracle"), ("shop-random", "scripted:random")):
        evaluate("shop", model=model, out=runs / name, limit=3, samples=2, seed=1)
    evaluate("math", model="scripted:random", out=runs / "math-random", limit=4, samples=2)
    evaluate("shop", model=Hostile(), out=runs / "hostile", limit=1, samples=1)
    audit_env(hackable.success_claim(), config=AuditConfig(out=root / "quality" / "claims" / "audit-1", tasks=3,
                                                           samples=1, probes=["claim_success"], mutations=False))
    cal = root / "quality" / "math" / "calibration-1"
    calibrate("math", model="scripted:random", out=cal, config=CalibrateConfig(limit=4, samples=2, knobs=True,
                                                                                  budget=8))
    bare = root / "quality" / "math" / "calibration-noplots"
    shutil.copytree(cal, bare)
    for png in bare.glob("*.png"):
        png.unlink()
    report = check_env(load("math"), config=CheckConfig(tasks=2, samples=1, subprocess=False))
    (root / "quality" / "math" / "check.json").write_text(json.dumps(report.to_dict(), default=str))
    (root / "quality" / "math" / "scorecard.html").write_text(
        "<html><body><h1>math scorecard</h1><script>window.pwned=3</script></body></html>")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP-SECRET-MARKER")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    before = _snapshot(root)

    import uvicorn

    from envfoundry.viewer.app import bind, create_app

    app = create_app([root], cache=base / "cache")
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    deadline = time.time() + 10
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=str(CHROMIUM))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield {"base": f"http://127.0.0.1:{port}", "port": port, "page": page, "root": root, "before": before,
           "cache": base / "cache"}
    browser.close()
    pw.stop()
    server.should_exit = True
    thread.join(5)


def _raw(site, path: str, method: str = "GET", host: str | None = None) -> tuple[int, str, dict]:
    """A request with the path sent exactly as given (a browser would normalise ``..`` first)."""
    c = http.client.HTTPConnection("127.0.0.1", site["port"], timeout=10)
    c.putrequest(method, path, skip_host=True)
    c.putheader("Host", host or f"127.0.0.1:{site['port']}")
    c.endheaders()
    r = c.getresponse()
    body = r.read().decode("utf-8", "replace")
    c.close()
    return r.status, body, dict(r.getheaders())


def test_the_run_list_shows_each_run_and_filters_by_model(site):
    page = site["page"]
    page.goto(site["base"] + "/")
    rows = page.locator("#runs tr.run")
    assert rows.count() == 4  # the audit's and the calibration's own runs are not listed by default
    oracle = rows.filter(has_text="shop-oracle")
    assert "scripted:oracle" in oracle.inner_text() and "100.0%" in oracle.inner_text()
    assert "6 / 6" in oracle.inner_text()  # stored / planned
    assert "test:<b>hostile</b>" in page.locator("#runs").inner_text()  # a model name is text too
    page.select_option("select[name=model]", "scripted:random")
    page.click("form.filters button")
    shown = page.locator("#runs tr.run")
    assert shown.count() == 2 and all("scripted:random" in t for t in shown.all_inner_texts())
    page.check("input[name=all]")
    page.select_option("select[name=model]", "")
    page.click("form.filters button")
    assert "probe-claim_success" in page.locator("#runs").inner_text()  # the audit's runs, when asked for


def test_a_run_page_filters_failed_rollouts_and_opens_a_trajectory(site):
    page = site["page"]
    page.goto(site["base"] + "/")
    page.click("#runs a:text('runs/shop-random')")
    assert page.locator("h1").inner_text() == "Run runs/shop-random"
    assert page.locator("#passk tr").count() == 3  # k = 1, 2 and a header
    assert page.locator("#rollouts tr.group").count() == 3  # one group per task
    page.select_option("select[name=only]", "failed")
    page.click("form.filters button")
    rows = page.locator("#rollouts tr.rollout")
    assert rows.count() == 6 and all("fail" in t for t in rows.all_inner_texts())
    page.select_option("select[name=only]", "passed")
    page.click("form.filters button")
    assert page.locator("#none").inner_text() == "no rollouts match"
    page.goto(site["base"] + "/run/0/runs/math-random")  # a metadata knob and a sort
    knob = page.locator("select[name=knob] option").nth(1)
    value = knob.get_attribute("value")
    page.select_option("select[name=knob]", value)
    page.select_option("select[name=sort]", "-score")
    page.click("form.filters button")
    name, _, v = value.partition("=")
    first = page.locator("#rollouts tr.rollout a.traj").first
    first.click()
    assert page.locator("h2", has_text="task metadata").count() == 1
    assert f"{name}\n{v}" in page.locator("section.right table").last.inner_text().replace("\t", "\n")


def test_a_trajectory_shows_its_tool_calls_and_world_diff(site):
    page = site["page"]
    page.goto(site["base"] + "/run/0/runs/shop-oracle")
    page.locator("#rollouts a.traj").first.click()
    calls = page.locator(".call .toolname").all_inner_texts()
    assert "checkout" in calls and "add_to_cart" in calls
    args = page.locator(".call pre.args").first.inner_text()
    assert json.loads(args)  # arguments shown as formatted JSON
    for msg in page.locator(".msg.tool").all():  # a tool's error answer is marked as one
        said = msg.locator(".content").text_content()
        assert ("toolerror" in msg.get_attribute("class")) == said.startswith("error:"), said
    diff = page.locator("#worlddiff")
    order = diff.locator("tr.change.insert")
    assert order.count() == 1 and "orders" in order.inner_text() and "required" in order.inner_text()
    stock = diff.locator("tr.change.update")
    assert "allowed" in stock.inner_text() and "stock" in stock.inner_text() and "→" in stock.inner_text()
    assert "all 1 requirement(s) met" in page.locator("#explanation").inner_text()
    assert page.locator("#timings").count() == 1
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOT))
    assert SHOT.stat().st_size > 10_000


def test_a_failed_shop_trajectory_marks_collateral_and_tool_errors(site):
    page = site["page"]
    page.goto(site["base"] + "/run/0/runs/shop-random?only=failed")
    hrefs = [a.get_attribute("href") for a in page.locator("#rollouts a.traj").all()]
    assert len(hrefs) == 6
    marks: list[str] = []
    for h in hrefs:
        page.goto(site["base"] + h)
        assert page.locator("#head .badge.fail").inner_text() == "fail"
        for change in page.locator("#worlddiff tr.change").all():
            marks.append(change.locator("td").first.inner_text().strip())
    # the random policy writes to the world at random: no purchase is right, so its changes are collateral
    assert marks and set(marks) <= {"collateral", "allowed"} and "collateral" in marks, marks


def test_compare_two_runs_shows_flipped_tasks(site):
    page = site["page"]
    page.goto(site["base"] + "/")
    page.check("#runs tr.run:has-text('shop-oracle') input[type=checkbox]")
    page.check("#runs tr.run:has-text('shop-random') input[type=checkbox]")
    page.click("#compare button")
    assert page.locator("h1").inner_text() == "Compare two runs"
    rows = page.locator("#tasks tbody tr")
    assert rows.count() == 3
    tally = page.locator("#tally").inner_text()
    assert "scripted:oracle" in page.locator("#compare-head").inner_text()
    flipped = page.locator("#tasks tr.flipped")
    # A and B are in the list's order (newest first): one direction of flip for all three tasks
    assert flipped.count() == 3, tally
    texts = flipped.all_inner_texts()
    assert all("now fails" in t for t in texts) or all("now passes" in t for t in texts)
    assert "3 tasks matched by task id" in tally


def test_an_audit_finding_links_to_its_example_trajectory(site):
    page = site["page"]
    page.goto(site["base"] + "/quality")
    page.click("#audits a")
    assert page.locator("h3", has_text="exploit").count() == 1
    finding = page.locator(".finding").first
    assert "claim_success" in finding.inner_text() and "fails the audit" in page.locator("h3").first.inner_text()
    finding.locator("a.example").click()
    assert "probe-claim_success" in page.locator(".crumbs").inner_text()
    assert page.locator(".badge.pass").first.inner_text() == "pass"  # the exploit passed
    said = " ".join(page.locator(".msg.assistant .content").all_inner_texts()).lower()
    assert "success" in said or "completed" in said


def test_calibration_shows_its_plots_or_tables_and_checks_and_scorecards(site):
    page = site["page"]
    page.goto(site["base"] + "/quality")
    page.click("#calibrations a:text('quality/math/calibration-1')")
    imgs = page.locator("img.plot")
    assert imgs.count() == 2
    assert all(page.evaluate("(i) => i.naturalWidth", h) > 100 for h in imgs.element_handles())
    assert "scorecard.html" in page.locator("#scorecard").inner_text()
    page.goto(site["base"] + "/quality")
    page.click("#calibrations a:text('quality/math/calibration-noplots')")
    assert page.locator("img.plot").count() == 0
    hist = page.locator("#histogram tbody tr")
    assert hist.count() == 10 and sum(int(r.locator("td").nth(1).inner_text()) for r in hist.all()) == 4
    assert page.locator("#knobs tbody tr").count() >= 1
    page.goto(site["base"] + "/quality")
    page.click("a:text('quality/math/check.json')")
    assert page.locator("#checks tbody tr").count() >= 3 and "pass" in page.locator("#checks").inner_text()
    page.goto(site["base"] + "/quality")
    page.click("#scorecards a:text('scorecard.html')")
    assert page.locator("h1").inner_text() == "math scorecard"
    assert page.evaluate("typeof window.pwned") == "undefined"  # served sandboxed: its script does not run


def test_markup_from_an_agent_is_shown_as_text_and_never_runs(site):
    from envfoundry.viewer.pages_traj import conversation

    html = conversation([{"role": "assistant", "content": XSS, "tool_calls": [
        {"id": "1", "name": XSS, "arguments": {"q": XSS}}]}])
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html
    page = site["page"]
    page.goto(site["base"] + "/run/0/runs/hostile")
    page.locator("#rollouts a.traj").first.click()
    assert page.evaluate("typeof window.pwned") == "undefined"
    texts = page.locator(".msg.assistant .content").all_inner_texts()
    assert XSS in texts and "done " + XSS in texts  # shown as the agent wrote it
    assert XSS in page.locator(".call .toolname").first.inner_text()
    assert XSS in page.locator(".msg.tool").first.inner_text()  # the tool's answer quotes the unknown name
    assert page.locator(".msg.tool.toolerror").count() == 1
    assert page.locator("main img").count() == 0 and page.locator("main script").count() == 0


@pytest.mark.parametrize("path", [
    "/file/0/../outside/secret.txt", "/file/0/%2e%2e/outside/secret.txt", "/file/0/%2e%2e%2foutside%2fsecret.txt",
    "/file/0/..%2f..%2foutside/secret.txt", "/file/0/escape/secret.txt", "/file/0//etc/passwd",
    "/file/0/%2F..%2Foutside%2Fsecret.txt", "/file/1/secret.txt", "/file/00/../outside/secret.txt",
    "/run/0/../outside", "/run/0/%2e%2e%2f%2e%2e%2f", "/traj/0/escape?task=x&sample=0", "/audit/0/escape",
    "/calibration/0/%2e%2e", "/check/0/../outside/secret.txt", "/compare?run=0/..&run=0/escape",
    "/file/0/%252e%252e%252foutside%252fsecret.txt", "/file/0/..%5c..%5coutside%5csecret.txt",
])
def test_no_url_reads_outside_the_served_folders(site, path):
    status, body, _ = _raw(site, path)
    assert "TOP-SECRET-MARKER" not in body and "root:" not in body
    assert status in (404, 422) or (status == 200 and path.startswith("/compare") and "pick" in body.lower())


def test_traversal_through_the_browser_is_refused_too(site):
    page = site["page"]
    for path in ("/file/0/%2e%2e%2foutside%2fsecret.txt", "/file/0/escape/secret.txt"):
        resp = page.goto(site["base"] + path)
        assert resp.status == 404 and "TOP-SECRET-MARKER" not in page.content()
        assert "nothing here inside the served folders" in page.locator("main").inner_text()


def test_read_only_loopback_and_headers(site):
    status, _, headers = _raw(site, "/")
    assert status == 200 and "script-src" not in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert _raw(site, "/", method="POST")[0] == 405
    assert _raw(site, "/", host="attacker.example")[0] == 400  # DNS rebinding: a foreign Host is refused
    assert _raw(site, "/", host="localhost:1")[0] == 200


def test_the_viewer_wrote_nothing_into_the_served_folders(site):
    after = _snapshot(site["root"])
    assert after == site["before"]
    assert any(site["cache"].glob("*.npz"))  # its indexes went to the cache folder instead
