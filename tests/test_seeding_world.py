"""Property tests: seeding, procedural task sources, world fork/diff/hash."""

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from envfoundry import World, derive_seed
from envfoundry.core.stats import mean_over_tasks, pass_at_k, pass_hat_k, wilson


@given(st.integers(), st.text(), st.integers(0, 1000))
def test_derive_seed_is_pure_and_in_range(seed, task_id, sample):
    a = derive_seed(seed, task_id, sample)
    assert a == derive_seed(seed, task_id, sample)
    assert 0 <= a < 2**63


@given(st.integers(0, 10**6), st.integers(0, 500))
def test_no_seed_plus_index_collisions(seed, i):
    # with seed + index, (seed, i + 1) and (seed + 1, i) would share a stream
    assert derive_seed(seed, "t", i + 1) != derive_seed(seed + 1, "t", i)


keys = st.text(alphabet="abcdef", min_size=1, max_size=3)
records = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(-5, 5), min_size=1)
tables = st.dictionaries(st.sampled_from(["t1", "t2"]), st.dictionaries(keys, records, max_size=6))
ops = st.lists(
    st.tuples(st.sampled_from(["insert", "update", "delete"]), st.sampled_from(["t1", "t2"]), keys,
              records),
    max_size=12,
)


def _apply(w: World, ops_):
    for op, t, k, r in ops_:
        exists = w.get(t, k) is not None
        if op == "insert" and not exists:
            w.insert(t, k, r)
        elif op == "update" and exists:
            w.update(t, k, **r)
        elif op == "delete" and exists:
            w.delete(t, k)


@settings(max_examples=200)
@given(tables, ops, ops)
def test_fork_isolation(tbl, ops_a, ops_b):
    base = World(tbl)
    snap = base.to_json()
    a, b = base.fork(), base.fork()
    _apply(a, ops_a)
    b_before = b.to_json()
    _apply(b, ops_b)
    assert base.to_json() == snap  # forks never write into their parent
    c = a.fork()
    _apply(c, ops_b)
    a2 = base.fork()
    _apply(a2, ops_a)
    assert a.to_json() == a2.to_json()  # a grandchild's writes never leak back
    assert b_before == snap


@settings(max_examples=200)
@given(tables, ops)
def test_diff_patch_round_trip_and_hash(tbl, ops_):
    base = World(tbl)
    after = base.fork()
    _apply(after, ops_)
    changes = base.diff(after)
    patched = base.fork()
    patched.apply(changes)
    assert patched.to_json() == after.to_json()
    assert patched.hash() == after.hash()
    # the hash depends on content only: rebuilding from a snapshot gives the same hash
    assert World(after.to_json()).hash() == after.hash()
    assert (not changes) == (base.hash() == after.hash())
    # a diff against an unrelated world with the same content is empty
    assert World(after.to_json()).diff(after) == []


def test_diff_is_field_level():
    w = World({"orders": {"o1": {"qty": 1, "sku": "A"}}})
    x = w.fork()
    x.update("orders", "o1", qty=2)
    x.insert("orders", "o2", {"qty": 1})
    x.delete("orders", "o1") if False else None
    ch = w.diff(x)
    assert [(c.op, c.key, c.field, c.before, c.after) for c in ch] == [
        ("update", "o1", "qty", 1, 2), ("insert", "o2", None, None, {"qty": 1}),
    ]


def test_records_are_read_only_views():
    w = World({"t": {"k": {"v": 1}}})
    import pytest
    with pytest.raises(TypeError):
        w.get("t", "k")["v"] = 2  # type: ignore[index]


@given(st.integers(0, 60), st.integers(1, 60))
def test_wilson_contains_estimate(c, n):
    c = min(c, n)
    lo, hi = wilson(c, n)
    assert 0 <= lo <= c / n <= hi <= 1


@given(st.lists(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))), max_size=300),
       st.integers(1, 12), st.booleans())
def test_mean_over_tasks_is_the_exact_mean_of_every_task(per_task, k, all_k):
    # computed once per distinct (n, c), yet bit for bit the correctly rounded sum over every task
    fn = pass_hat_k if all_k else pass_at_k
    vals = [fn(n, c, k) for n, c in per_task if n >= k]
    expect = math.fsum(vals) / len(vals) if vals else None
    assert mean_over_tasks(per_task, k, all_k=all_k) == expect
    assert mean_over_tasks(Counter(per_task), k, all_k=all_k) == expect
    assert mean_over_tasks(list(reversed(per_task)), k, all_k=all_k) == expect


def test_pass_at_k_known_values():
    assert pass_at_k(4, 0, 1) == 0 and pass_at_k(4, 4, 4) == 1
    assert abs(pass_at_k(4, 1, 2) - 0.5) < 1e-12  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert abs(pass_hat_k(4, 2, 2) - 1 / 6) < 1e-12
    assert wilson(0, 16)[1] > 0.19  # 0/16 still allows a ~20% pass rate


_OUTCOMES = ["completed", "truncated", "policy_error", "env_error", "grader_error"]


@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(_OUTCOMES), st.booleans(), st.integers(0, 50)),
                max_size=60))
def test_summary_counts_every_record_once(rows):
    from envfoundry.rollout.summary import summarize

    recs = [{"task_id": f"t{t}", "outcome": o, "score": float(ok) if o in _OUTCOMES[:2] else None,
             "passed": ok if o in _OUTCOMES[:2] else None, "usage": {"completion_tokens": tok}}
            for t, o, ok, tok in rows]
    s = summarize(recs, samples=3)
    scored = [r for r in recs if r["outcome"] in ("completed", "truncated")]
    assert s["n_trajectories"] == len(recs) and s["n_scored"] == len(scored)
    assert s["n_errors"] == len(recs) - len(scored)  # errors are counted, never scored
    assert s["passes"] == sum(r["passed"] for r in scored)
    assert s["n_tasks"] == len({r["task_id"] for r in recs})
    assert s["completion_tokens"] == sum(tok for *_, tok in rows)
    if scored:
        assert s["pass_rate"] == s["passes"] / len(scored) == s["mean_score"]
        per_task = {}
        for r in scored:
            per_task.setdefault(r["task_id"], []).append(r["passed"])
        expect = sum(pass_at_k(len(v), sum(v), 1) for v in per_task.values()) / len(per_task)
        assert abs(s["pass_at_k"]["1"] - expect) < 1e-12
    else:
        assert s["pass_rate"] is None and s["pass_at_k"]["1"] is None
