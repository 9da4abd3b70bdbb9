"""The shop environment: catalog, tasks, both modes, faults, the state-diff grade, isolation."""

import collections
import json

import pytest

import envfoundry
from envfoundry import GradeInput, Message, ToolCall, ToolError
from envfoundry.envs.shop import make_env
from envfoundry.envs.shop.account import task_world
from envfoundry.envs.shop.catalog import build_catalog, get_catalog
from envfoundry.envs.shop.vocab import CATEGORIES, KINDS
from tests.conftest import cli


@pytest.fixture(scope="module")
def env():
    return make_env()


@pytest.fixture(scope="module")
def web():
    return make_env("web")


def run_oracle(env, task, seed=0, *, final=True):
    """The reference solution to its end (``final=False``: up to, not including, its last message)."""
    ep = env.reset(task, seed=seed)
    while not (ep.terminated or ep.truncated):
        action = env.reference_action(ep)
        if not final and not action.tool_calls:
            break
        ep.step(action)
    return ep


def call(ep, name, **args):
    return ep.step(Message("assistant", "", [ToolCall(name, args)])).observation[0].content


def grade(ep, world=None):
    g = GradeInput.from_episode(ep)
    if world is not None:
        g = GradeInput(g.task, g.messages, g.final, g.world_before, world, g.truncated)
    return ep.env.grade(ep) if world is None else ep.env.graders[0][2].grade(g)


# ------------------------------------------------------------------ catalog


def test_catalog_is_big_varied_and_confusable():
    cat = get_catalog(0, 10_000)
    w = cat.world
    assert w.count("products") == 10_000 and w.count("variants") > 40_000
    products = dict(w.rows("products"))
    kinds = collections.Counter(p["kind"] for p in products.values())
    assert set(kinds) == {k.name for k in KINDS}
    assert {p["category"] for p in products.values()} == set(CATEGORIES)
    assert sum(n for k, n in kinds.items() if k.endswith("socks")) > 2500
    assert all(1.0 <= p["rating"] <= 5.0 and p["reviews"] >= 0 and p["ship_days"] >= 1 for p in products.values())
    variants = [v for _, v in w.rows("variants")]
    assert all(isinstance(v["price_cents"], int) and v["price_cents"] > 0 for v in variants)
    assert len({v["price_cents"] % 100 for v in variants}) >= 5  # prices with cents
    assert 0.05 < sum(v["stock"] == 0 for v in variants) / len(variants) < 0.2
    # misleading titles and near-duplicates
    blend_as_merino = [p for p in products.values()
                       if p["material"] == "merino blend" and "Merino" in p["title"] and "Blend" not in p["title"]]
    assert len(blend_as_merino) > 20
    assert any("Hiking-Style" in p["title"] and p["kind"] == "casual socks" for p in products.values())
    titles = collections.Counter(p["title"] for p in products.values())
    assert sum(1 for n in titles.values() if n > 1) > 100
    assert get_catalog(0, 10_000) is cat  # built once per process


def test_catalog_is_a_pure_function_of_seed_and_size():
    a, b, c = build_catalog(7, 300), build_catalog(7, 300), build_catalog(8, 300)
    assert a.world.to_json() == b.world.to_json()
    assert a.world.to_json() != c.world.to_json()


def test_search_filters_sorts_and_pages_agree_with_the_world():
    cat = get_catalog(0, 10_000)
    w = cat.world.fork()
    vid = cat.product("P00002")["variant_ids"][0]
    w.update("variants", vid, stock=0, price_cents=1)  # a per-episode change the index must see
    dirty = {vid}
    n, hits = cat.index.search(w, dirty, "merino hiking socks", category="socks", material="merino wool",
                               min_rating=4.0, size="M", in_stock=True, max_price_cents=2500, sort="price_asc")
    assert n == len(cat.index.search(w, dirty, "merino hiking socks", category="socks", material="merino wool",
                                     min_rating=4.0, size="M", in_stock=True, max_price_cents=2500)[1]) > 5
    assert [h.price_cents for h in hits] == sorted(h.price_cents for h in hits)
    for h in hits:
        p = w.get("products", h.product_id)
        assert p["category"] == "socks" and p["material"] == "merino wool" and p["rating"] >= 4.0
        ok = [w.get("variants", v) for v in p["variant_ids"]]
        ok = [v for v in ok if v["size"] == "M" and v["stock"] > 0]
        assert ok and h.price_cents == min(v["price_cents"] for v in ok) <= 2500
    _, page1 = cat.index.search(w, dirty, "socks", limit=10)
    _, page2 = cat.index.search(w, dirty, "socks", offset=10, limit=10)
    _, both = cat.index.search(w, dirty, "socks", limit=20)
    assert page1 + page2 == both
    _, mine = cat.index.search(w, dirty, "", brand=cat.product("P00002")["brand"], sort="price_asc", limit=1)
    assert mine[0].product_id == "P00002" and mine[0].price_cents == 1  # the changed price, from the world
    assert cat.index.search(w, set(), "zzzz qqqq")[0] == 0


# -------------------------------------------------------------------- tasks


def test_task_ids_deterministic_splits_disjoint_and_knobs(env):
    again = make_env()
    test, train = env.tasks("test")[:150], env.tasks("train")[:300]
    assert [t.id for t in test[:40]] == [t.id for t in again.tasks("test")[:40]]
    assert [t.id for t in env.tasks("test", seed=1)[:40]] != [t.id for t in test[:40]]
    assert not {t.id for t in test} & {t.id for t in train}
    gold = {t.data["candidates"][0]["product_id"] for t in test}
    assert not gold & {t.data["candidates"][0]["product_id"] for t in train}
    for t in test:
        for k in ("n_constraints", "distractors", "depth", "out_of_stock", "coupon", "budget_slack",
                  "budget_needs_coupon", "fault_rate", "difficulty"):
            assert k in t.metadata
        assert len(json.dumps(t.world)) < 2000  # parameters only, never the catalog
    md = [t.metadata for t in test]
    assert {m["coupon"] for m in md} == {"none", "applies", "decoys", "applies+decoys"}
    assert any(m["out_of_stock"] for m in md) and any(m["depth"] > 10 for m in md)
    assert any(m["budget_needs_coupon"] for m in md) and {m["fault_rate"] for m in md} >= {0.0, 0.3}
    assert sum(m["category"] == "socks" for m in md) > len(md) / 3


def test_gold_is_the_unique_cheapest_valid_purchase(env):
    """An independent brute force over each task's world agrees with the generator."""
    from envfoundry.envs.shop import store
    from envfoundry.envs.shop.faults import Faults

    cat = get_catalog(0, 10_000)
    for task in env.tasks("test")[:60]:
        d, cons, qty = task.data, task.data["constraints"], task.data["quantity"]
        w = task_world(task)
        found = []
        for pid in cat.by_kind[task.metadata["kind"]]:
            p = w.get("products", pid)
            if any(k in cons and p[f] != cons[k] for k, f in (("material", "material"), ("brand", "brand"))):
                continue
            if p["rating"] < cons.get("min_rating", 0) or p["ship_days"] > cons.get("max_ship_days", 99):
                continue
            for vid in p["variant_ids"]:
                v = w.get("variants", vid)
                if cons.get("size", v["size"]) == v["size"] and cons.get("colour", v["colour"]) == v["colour"] \
                        and v["stock"] >= qty:
                    found.append((v["price_cents"], vid))
        found.sort()
        cands = d["candidates"]
        assert found[0][1] == cands[0]["variant_id"], task.prompt
        assert len(found) == 1 or found[1][0] > found[0][0]
        assert [c["variant_id"] for c in cands] == [vid for _, vid in found[:len(cands)]]
        assert cands[0]["total_cents"] <= d["budget_cents"]
        # exactly the promised coupon applies to the gold purchase
        f = w.fork()
        store.add_to_cart(cat, f, cands[0]["variant_id"], qty)
        lines = store.cart(cat, f)
        applies = []
        for code, _ in f.rows("coupons"):
            try:
                store.coupon_discount(f, code, lines)
                applies.append(code)
            except ToolError:
                pass
        assert applies == ([d["coupon"]] if d["coupon"] else [])
        q = store.apply_coupon(cat, f, d["coupon"])[0] if d["coupon"] else store.quote(cat, f)
        assert q.total == cands[0]["total_cents"] <= d["budget_cents"]
        key = store.checkout(cat, f, d["address_id"], d["payment_ids"][0], Faults(0.0, 0))
        assert f.get("orders", key)["total_cents"] == q.total


# ------------------------------------------------------- scripted policies


@pytest.mark.parametrize("name", ["shop", "shop-web"])
def test_oracle_noop_random_through_the_engine(name, tmp_path):
    runs = {m: envfoundry.evaluate(name, model=f"scripted:{m}", out=tmp_path / m, limit=200)
            for m in ("oracle", "noop", "random")}
    for m, run in runs.items():
        assert run.summary["outcomes"]["completed"] == 200 == run.summary["n_trajectories"], m
    assert runs["oracle"].summary["pass_rate"] == 1.0 and runs["oracle"].summary["mean_score"] == 1.0
    assert runs["noop"].summary["mean_score"] == 0.0
    assert runs["random"].summary["pass_rate"] < 0.05 and runs["random"].summary["mean_score"] < 0.05
    rec = next(iter(runs["oracle"].records()))
    assert any(c["table"] == "orders" and c["op"] == "insert" for c in rec["world_diff"])


def test_show_renders_purchase_diff_and_breakdown(tmp_path):
    envfoundry.evaluate("shop", model="scripted:oracle", out=tmp_path / "run", limit=2)
    rec = json.loads((tmp_path / "run" / "trajectories.jsonl").read_text().splitlines()[0])
    r = cli("show", str(tmp_path / "run"), "--task", rec["task_id"])
    assert r.returncode == 0, r.stderr
    for needle in ("+ orders[O-", "items:", "total_cents:", "met: the purchase", "collateral: 0 record(s)",
                   "~ variants["):
        assert needle in r.stdout, needle


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize("mode", ["tools", "web"])
def test_faults_fire_at_their_rate_and_the_oracle_recovers(mode):
    env = make_env(mode, fault_rate=0.3)
    kinds, calls, n = collections.Counter(), 0, 120
    for i, task in enumerate(env.tasks("test")[:n]):
        ep = run_oracle(env, task, seed=i)
        faults = ep.state["shop"].faults
        calls += faults.calls
        kinds.update(e["kind"] for e in faults.log)
        assert env.grade(ep).value == 1.0, (task.id, faults.log)
    assert 0.2 < kinds["transient"] / calls < 0.32  # 0.3 per call, never three in a row
    assert 0.15 < (kinds["price_change"] + kinds["sold_out"]) / n < 0.4  # at most once, at checkout
    assert kinds["session_expired"] > 5 and kinds["sold_out"] > 0 and kinds["price_change"] > 5


def test_faults_are_reproducible_and_off_at_rate_zero(env):
    faulty = make_env(fault_rate=0.3)
    tasks = faulty.tasks("test")[:10]
    logs = [[run_oracle(faulty, t, seed=s).state["shop"].faults.log for t in tasks] for s in (1, 1, 2)]
    assert logs[0] == logs[1] != logs[2]
    quiet = make_env(fault_rate=0)
    for t in quiet.tasks("test")[:20]:
        assert run_oracle(quiet, t).state["shop"].faults.log == []


def test_recovery_from_each_fault(env):
    """Forced faults, one at a time: the oracle still buys the right thing."""
    faulty = make_env(fault_rate=0.5)
    seen = set()
    for i, task in enumerate(faulty.tasks("test")[:80]):
        ep = run_oracle(faulty, task, seed=100 + i)
        kinds = {e["kind"] for e in ep.state["shop"].faults.log}
        s = faulty.grade(ep)
        assert s.passed, (kinds, s.explanation)
        if "sold_out" in kinds:
            sold = next(e["variant_id"] for e in ep.state["shop"].faults.log if e["kind"] == "sold_out")
            assert sold == task.data["candidates"][0]["variant_id"] or sold not in {
                c["variant_id"] for c in task.data["candidates"]}
        seen |= kinds
    assert seen == {"transient", "session_expired", "price_change", "sold_out"}


# ------------------------------------------------------------------- grader


def _task(env, pred):
    return next(t for t in env.tasks("test")[:300] if pred(t))


def test_grader_penalises_extra_order_cart_junk_and_account_changes(env):
    task = _task(env, lambda t: t.world["fault_rate"] == 0)
    ep = run_oracle(env, task, final=False)
    assert grade(ep).value == 1.0
    gold = task.data["candidates"][0]
    w = ep.world.fork()
    w.update("addresses", task.data["address_id"], street="1 Other Street")
    s = grade(ep, w)
    assert not s.passed and s.value == pytest.approx(0.375)
    assert s.breakdown["collateral"][0]["summary"].startswith("update addresses[")
    # a second order, through the tools
    call(ep, "add_to_cart", product_id=gold["product_id"], size=gold["size"], colour=gold["colour"])
    call(ep, "checkout", address_id=task.data["address_id"], payment_id=task.data["payment_ids"][0])
    s = grade(ep)
    assert not s.passed and s.breakdown["requirements"][0]["met"] and s.value == pytest.approx(0.375)
    assert [c["table"] for c in s.breakdown["collateral"]] == ["orders"]
    # something left in the cart, and a new address
    call(ep, "add_to_cart", product_id=gold["variant_id"])
    call(ep, "add_address", label="Gym", street="2 Track Road", city="Oslo", postcode="0150", country="Norway")
    s = grade(ep)
    assert s.breakdown["collateral_records"] == 3 and s.value == pytest.approx(0.125)


def test_grader_wrong_size_over_budget_missing_coupon_and_claims(env):
    from envfoundry.envs.shop.catalog import get_catalog

    cat = get_catalog(0, 10_000)
    task = _task(env, lambda t: t.world["fault_rate"] == 0 and "size" in t.data["constraints"] and any(
        cat.variant(v)["size"] != t.data["candidates"][0]["size"] and cat.variant(v)["stock"] >= t.data["quantity"]
        for v in cat.product(t.data["candidates"][0]["product_id"])["variant_ids"]))
    d, gold = task.data, task.data["candidates"][0]
    ep = env.reset(task, seed=0)
    ep.step(Message("assistant", "I bought it, order O-1003 is placed!"))
    assert env.grade(ep).value == 0.0  # only the world counts
    ep = env.reset(task, seed=0)
    other = next(v for v in cat.product(gold["product_id"])["variant_ids"]
                 if cat.variant(v)["size"] != gold["size"] and cat.variant(v)["stock"] >= d["quantity"])
    call(ep, "add_to_cart", product_id=other, quantity=d["quantity"])
    if d["coupon"]:
        call(ep, "apply_coupon", code=d["coupon"])
    out = call(ep, "checkout", address_id=d["address_id"], payment_id=d["payment_ids"][0])
    assert out.startswith("placed"), out
    s = env.grade(ep)
    bad = {c["field"] for c in s.breakdown["requirements"][0]["checks"] if not c["ok"]}
    assert not s.passed and "items" in bad and 0 < s.value <= 0.25
    # over budget and without the coupon: the order record as a shop bug could have written it
    w = ep.world_before.fork()
    order = dict(ep.world.get("orders", s.breakdown["requirements"][0]["records"][0]))
    order.update(items=[{"variant_id": gold["variant_id"], "quantity": d["quantity"]}],
                 total_cents=d["budget_cents"] + 1, coupon="NOPE")
    w.insert("orders", "O-2000", order)
    s = grade(ep, w)
    bad = {c["field"] for c in s.breakdown["requirements"][0]["checks"] if not c["ok"]}
    assert bad == {"total_cents", "coupon"} and s.value == pytest.approx(0.5 * 6 / 8)


def test_coupon_is_required_when_one_applies(env):
    task = _task(env, lambda t: t.world["fault_rate"] == 0 and t.data["coupon"]
                 and not t.metadata["budget_needs_coupon"])
    d, gold = task.data, task.data["candidates"][0]
    ep = env.reset(task, seed=0)
    call(ep, "add_to_cart", product_id=gold["variant_id"], quantity=d["quantity"])
    call(ep, "checkout", address_id=d["address_id"], payment_id=d["payment_ids"][0])
    s = env.grade(ep)
    assert not s.passed and "coupon" in s.explanation


# ------------------------------------------------------ tools and web pages


def test_tool_errors_are_specific(env):
    task = _task(env, lambda t: t.world["fault_rate"] == 0 and len(t.world["coupons"]) >= 2)
    ep = env.reset(task, seed=0)
    assert "no product with id 'P99999999'" in call(ep, "view_product", product_id="P99999999")
    gold = task.data["candidates"][0]
    out = call(ep, "add_to_cart", product_id=gold["product_id"], size="XXXL", colour=gold["colour"])
    assert out.startswith("error:") and "XXXL" in out
    assert "does not exist" in call(ep, "apply_coupon", code="NOSUCH")
    assert "cart is empty" in call(ep, "checkout", address_id="a1", payment_id="pm1")
    call(ep, "add_to_cart", product_id=gold["variant_id"], quantity=task.data["quantity"])
    msgs = [call(ep, "apply_coupon", code=c["code"]) for c in task.world["coupons"] if c["code"] != task.data["coupon"]]
    assert all(m.startswith("error: coupon") and any(x in m for x in ("expired", "only to", "minimum spend"))
               for m in msgs), msgs
    expired = next(k for k, p in ep.world.rows("payment_methods") if p["expires"] < "2025-06")
    assert "expired" in call(ep, "checkout", address_id=task.data["address_id"], payment_id=expired)
    assert "unknown address id 'x9'" in call(ep, "checkout", address_id="x9", payment_id=task.data["payment_ids"][0])
    assert env.tools["checkout"].writes and not env.tools["search"].writes
    n, hits = search_prices(ep, "socks")
    assert n > 100 and hits == sorted(hits)


def search_prices(ep, q):
    out = call(ep, "search", query=q, sort="price_asc", in_stock=True, size="M")
    n = int(out.split(" results")[0])
    prices = [float(line.split("from $")[1].split(" ")[0].replace(",", "")) for line in out.splitlines()[1:-1]]
    return n, prices


def test_web_pages_and_bad_actions(web):
    task = web.tasks("test")[0]
    assert "[1] field: search" in task.prompt and {"click", "type_text", "back"} == set(web.tools)
    ep = web.reset(task, seed=0)
    assert "there is no element [99]" in call(ep, "click", element=99)
    assert "is a text field" in call(ep, "click", element=1)
    assert "not a text field" in call(ep, "type_text", element=2, text="x")
    assert "no previous page" in call(ep, "back")
    page = call(ep, "type_text", element=1, text="merino hiking socks")
    assert 'search "merino hiking socks"' in page
    page = call(ep, "click", element=2)
    assert page.startswith("== Search results ==") and "Next page" in page
    assert call(ep, "back").startswith("== Shop home ==")


# ---------------------------------------------------------------- isolation


def test_interleaved_rollouts_are_isolated(env):
    task = _task(env, lambda t: t.world["fault_rate"] == 0)
    gold = task.data["candidates"][0]["variant_id"]
    cat = get_catalog(0, 10_000)
    stock = cat.world.get("variants", gold)["stock"]
    eps = [env.reset(task, seed=s) for s in range(3)]
    while not all(e.terminated for e in eps[:2]):
        for e in eps[:2]:
            if not e.terminated:
                e.step(env.reference_action(e))
    assert [env.grade(e).value for e in eps[:2]] == [1.0, 1.0]
    assert eps[2].world.count("orders") == eps[0].world_before.count("orders") == eps[0].world.count("orders") - 1
    assert cat.world.get("variants", gold)["stock"] == stock
    assert eps[0].world_before.diff(task_world(task)) == []


def test_groups_start_from_the_same_state(tmp_path):
    run = envfoundry.evaluate(make_env(fault_rate=0.3), model="scripted:oracle", out=tmp_path / "g", limit=25,
                              samples=4, concurrency=16)
    assert run.summary["pass_hat_k"]["4"] == 1.0


def test_string_arguments_and_registration():
    e = envfoundry.load("shop-web", {"catalog_size": "2000", "fault_rate": "0.1", "max_turns": "50"})
    assert e.name == "shop-web" and e.max_turns == 50 and e.tasks("test")[0].world["catalog_size"] == 2000
    assert envfoundry.load("shop", {"mode": "web"}).name == "shop-web"
    with pytest.raises(ValueError, match="mode must be one of"):
        make_env("gui")
    with pytest.raises(envfoundry.UsageError, match="fault_rate"):  # --env-arg strings: converted by type hints
        envfoundry.load("shop", {"fault_rate": "lots"})
