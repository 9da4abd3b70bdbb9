"""The general state-diff grader: requirements, allowed and ignored changes, collateral, scoring."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envfoundry import GradeInput, Task, World
from envfoundry.grading import (
    ChangePattern,
    Delete,
    Insert,
    StateDiffGrader,
    StateDiffSpec,
    Update,
    eq,
    grade_state_diff,
    le,
    one_of,
    same_records,
    satisfies,
)


def base() -> World:
    return World({
        "orders": {"o1": {"items": [{"sku": "x", "qty": 1}], "total": 500, "address": "home"}},
        "addresses": {"home": {"city": "Oslo"}, "office": {"city": "Bergen"}},
        "stock": {"a": {"n": 5}, "b": {"n": 3}},
        "sessions": {"s": {"seen": 0}},
        "users": {"u": {"email": "a@x.org", "updated_at": 1}},
    })


ORDER = Insert("orders", name="the purchase", where={
    "items": same_records([{"sku": "a", "qty": 2}], on=("sku", "qty")),
    "address": "office",
    "total": le(1000),
})
SPEC = StateDiffSpec(require=[ORDER], allow=[ChangePattern("stock", field="n")],
                     ignore=[ChangePattern("sessions"), ChangePattern(field="updated_at")])


def buy(w: World, key="o2", sku="a", qty=2, total=900, address="office", extra=None):
    rec = {"items": [{"sku": sku, "qty": qty, "price": total // qty}], "total": total,
           "address": address, **(extra or {})}
    w.insert("orders", key, rec)
    w.update("stock", sku, n=w.get("stock", sku)["n"] - qty)


def test_correct_change_passes_with_noise_ignored_and_side_effects_allowed():
    b = base()
    a = b.fork()
    buy(a)
    a.update("sessions", "s", seen=7)
    a.update("users", "u", updated_at=2)
    s = grade_state_diff(b, a, SPEC)
    assert s.value == 1.0 and s.passed
    assert s.breakdown["requirements"][0]["met"] and s.breakdown["requirements"][0]["records"] == ["o2"]
    assert [c["table"] for c in s.breakdown["allowed"]] == ["stock"]
    assert s.breakdown["collateral"] == []
    assert not any(c["table"] == "sessions" for c in s.breakdown["allowed"])


def test_nothing_done_scores_zero():
    b = base()
    s = grade_state_diff(b, b.fork(), SPEC)
    assert s.value == 0.0 and not s.passed
    assert "no new record in orders" in s.explanation


@pytest.mark.parametrize("kw,field", [
    ({"qty": 3, "total": 900}, "items"),
    ({"sku": "b", "qty": 2}, "items"),
    ({"total": 1200}, "total"),
    ({"address": "home"}, "address"),
])
def test_wrong_purchase_gets_capped_partial_credit_and_says_why(kw, field):
    b = base()
    a = b.fork()
    buy(a, **kw)
    s = grade_state_diff(b, a, SPEC)
    assert not s.passed and 0 < s.value <= 0.5 * 2 / 3 + 1e-9
    bad = [c for c in s.breakdown["requirements"][0]["checks"] if not c["ok"]]
    assert [c["field"] for c in bad] == [field]
    assert field in s.explanation


def test_extra_insert_is_collateral_even_if_it_matches_too():
    b = base()
    a = b.fork()
    buy(a, key="o2")
    buy(a, key="o3", qty=1, total=450)
    s = grade_state_diff(b, a, SPEC)
    assert not s.passed and s.value == pytest.approx(0.5 * 0.75)
    assert s.breakdown["requirements"][0]["records"] == ["o2"]
    assert [(c["op"], c["key"]) for c in s.breakdown["collateral"]] == [("insert", "o3")]
    a2 = b.fork()
    buy(a2, key="o2")
    buy(a2, key="o3")  # a second, identical correct order: still collateral
    s2 = grade_state_diff(b, a2, SPEC)
    assert not s2.passed and s2.breakdown["collateral_records"] == 1


def test_collateral_counts_records_not_fields_and_can_reach_zero():
    b = base()
    a = b.fork()
    buy(a)
    a.update("addresses", "home", city="Paris", zip="75001")
    s = grade_state_diff(b, a, SPEC)
    assert s.breakdown["collateral_records"] == 1 and len(s.breakdown["collateral"]) == 2
    assert s.value == pytest.approx(0.375)
    for k in ("home", "office"):
        a.delete("addresses", k)
    a.insert("addresses", "gym", {"city": "X"})
    a.delete("orders", "o1")
    s = grade_state_diff(b, a, SPEC)
    assert s.breakdown["collateral_records"] == 4 and s.value == 0.0


def test_update_and_delete_requirements_credit_progress_only():
    spec = StateDiffSpec(require=[
        Update("users", "u", where={"email": "b@x.org", "updated_at": one_of(1, 2)}, name="email"),
        Delete("orders", "o1", name="cancel"),
    ])
    b = base()
    s0 = grade_state_diff(b, b.fork(), spec)
    assert s0.value == 0.0  # the already-true predicate earns nothing by itself
    a = b.fork()
    a.update("users", "u", email="b@x.org", updated_at=2)
    s1 = grade_state_diff(b, a, spec)
    assert s1.value == pytest.approx(0.25) and s1.breakdown["requirements_met"] == 1
    assert s1.breakdown["collateral"] == []  # the claimed fields are not collateral
    a.delete("orders", "o1")
    assert grade_state_diff(b, a, spec).value == 1.0


def test_count_and_non_partial_requirements():
    spec = StateDiffSpec(require=[Insert("orders", where={"address": "office"}, count=2, partial=False)],
                         allow=[ChangePattern("stock")])
    b = base()
    a = b.fork()
    buy(a, key="o2")
    s = grade_state_diff(b, a, spec)
    assert s.value == 0.0 and "1 of 2" in s.breakdown["requirements"][0]["why"]
    buy(a, key="o3")
    assert grade_state_diff(b, a, spec).passed


def test_spec_validation_and_predicates():
    with pytest.raises(ValueError, match="partial_cap"):
        StateDiffSpec(partial_cap=1.0)
    with pytest.raises(ValueError, match="count"):
        StateDiffSpec(require=[Insert("t", count=0)])
    assert not le(3)("x") and not le(3)(None) and le(3)(3)
    assert satisfies(lambda v: v.startswith("a"), "starts with a")("abc")
    assert not satisfies(lambda v: v.startswith("a"), "starts with a")(3)
    assert "exactly" in same_records([{"a": 1}], on=("a",)).describe()
    assert not same_records([{"a": 1}], on=("a",))([{"a": 1}, {"a": 1}])
    assert eq(None)(None) and not eq(None)(0)


def test_grader_protocol_reads_spec_from_task():
    b = base()
    a = b.fork()
    buy(a)
    task = Task(env="e", env_version="1", split="test", prompt="p", data={"budget": 800})
    g = GradeInput(task=task, messages=(), final="I bought it!", world_before=b, world_after=a,
                   truncated=False)
    grader = StateDiffGrader(lambda g: StateDiffSpec(require=[
        Insert("orders", where={"total": le(g.task.data["budget"])})]))
    s = grader.grade(g)
    assert not s.passed and s.breakdown["requirements"][0]["checks"][0]["actual"] == 900


tables = st.dictionaries(st.sampled_from(["orders", "addresses", "junk"]),
                         st.dictionaries(st.sampled_from("abcd"), st.fixed_dictionaries(
                             {"v": st.integers(0, 3)}), max_size=3), max_size=3)


@settings(max_examples=150, deadline=None)
@given(tables, tables)
def test_partial_credit_never_reaches_a_pass(t1, t2):
    b = World(t1)
    a = b.fork()
    for t, rows in t2.items():
        for k, r in rows.items():
            a.upsert(t, k, r)
    spec = StateDiffSpec(require=[Insert("orders", where={"v": 2}), Update("addresses", "a", where={"v": 1})])
    s = grade_state_diff(b, a, spec)
    assert 0.0 <= s.value <= 1.0
    assert (s.value == 1.0) == s.passed
    if not s.passed:
        assert s.value <= spec.partial_cap
