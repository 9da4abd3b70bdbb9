"""pass@k and pass^k in log space agree with the exact ratio of binomial coefficients, and a
summary reports a bounded set of k whatever the number of samples."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envfoundry.core.stats import at_k_table, comb_ratio, mean_over_tasks, pass_at_k, pass_hat_k, summary_ks
from envfoundry.rollout.summary import Summary, summarize

TOL = 1e-9  # the bar; the log-space products are in fact within ~1e-15 here


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """The formula as it was computed before: exact integers."""
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def exact_pass_hat_k(n: int, c: int, k: int) -> Fraction:
    return Fraction(math.comb(c, k), math.comb(n, k))


def nck(max_n: int):
    """(n, c, k) with 0 <= c <= n and 1 <= k <= n."""
    return st.integers(1, max_n).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n)))


@settings(max_examples=400, deadline=None)
@given(nck(200))
def test_small_groups_match_the_exact_fractions(t):
    n, c, k = t
    assert abs(pass_at_k(n, c, k) - exact_pass_at_k(n, c, k)) <= TOL
    assert abs(pass_hat_k(n, c, k) - exact_pass_hat_k(n, c, k)) <= TOL


@settings(max_examples=60, deadline=None)
@given(nck(3000))
def test_large_groups_use_the_vector_path_and_still_match(t):
    n, c, k = t
    assert abs(pass_at_k(n, c, k) - exact_pass_at_k(n, c, k)) <= TOL
    assert abs(pass_hat_k(n, c, k) - exact_pass_hat_k(n, c, k)) <= TOL


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 400), st.data())
def test_ratios_near_one_half_and_near_the_edges(n, data):
    # hostile corners: c = 1 and c = n - 1, k next to n - c (a ratio of 1/C(n, k)), k = n
    c = data.draw(st.sampled_from([1, n - 1, n // 2]))
    k = data.draw(st.sampled_from(sorted({1, max(1, n - c), max(1, n - c - 1), n})))
    assert abs(pass_at_k(n, c, k) - exact_pass_at_k(n, c, k)) <= TOL
    assert abs(pass_hat_k(n, c, k) - exact_pass_hat_k(n, c, k)) <= TOL


@given(nck(120))
def test_pass_at_k_rises_and_pass_hat_k_falls_with_k(t):
    n, c, _ = t
    at = [pass_at_k(n, c, k) for k in range(1, n + 1)]
    hat = [pass_hat_k(n, c, k) for k in range(1, n + 1)]
    assert all(b >= a - 1e-12 for a, b in zip(at, at[1:], strict=False))
    assert all(b <= a + 1e-12 for a, b in zip(hat, hat[1:], strict=False))
    assert abs(at[0] - c / n) < 1e-12 and abs(hat[0] - c / n) < 1e-12
    assert all(0.0 <= v <= 1.0 for v in at + hat)


def test_known_values_and_exact_corners():
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5, abs=1e-15)
    assert pass_hat_k(4, 2, 2) == pytest.approx(1 / 6, abs=1e-15)
    assert pass_at_k(10, 0, 10) == 0.0 and pass_hat_k(10, 10, 10) == 1.0
    assert pass_at_k(10, 1, 10) == 1.0 and pass_hat_k(10, 9, 10) == 0.0
    # 1,000,000 samples, one pass: any half of them holds it with probability exactly 1/2
    assert pass_at_k(10**6, 1, 5 * 10**5) == pytest.approx(0.5, abs=1e-12)
    # beyond float's exact integers: the short product (c factors) is taken
    n, c, k = 10**20, 3, 10**19
    exact = 1 - math.prod(Fraction(n - k - j, n - j) for j in range(c))  # C(n-c,k)/C(n,k) = C(n-k,c)/C(n,c)
    assert abs(pass_at_k(n, c, k) - float(exact)) <= TOL
    assert comb_ratio(5, 0, 5) == 1.0 and comb_ratio(5, 3, 3) == 0.0


@pytest.mark.parametrize("n, c, k", [(4, 1, 0), (4, 1, 5), (4, 5, 1), (4, -1, 1), (0, 0, 1)])
def test_impossible_arguments_raise(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
    with pytest.raises(ValueError):
        pass_hat_k(n, c, k)


@given(st.integers(1, 2**40))
def test_summary_ks_are_few_powers_of_two_and_the_group_size(samples):
    ks = summary_ks(samples)
    assert ks[0] == 1 and ks[-1] == samples and ks == sorted(set(ks))
    assert all(k & (k - 1) == 0 for k in ks[:-1])
    assert len(ks) <= samples.bit_length() + 1
    assert summary_ks(20000) == [2**i for i in range(15)] + [20000]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))), max_size=60),
       st.integers(1, 40), st.booleans())
def test_mean_over_tasks_matches_the_exact_mean(per_task, k, all_k):
    exact = exact_pass_hat_k if all_k else exact_pass_at_k
    vals = [exact(n, c, k) for n, c in per_task if n >= k]
    got = mean_over_tasks(per_task, k, all_k=all_k)
    if not vals:
        assert got is None
    else:
        assert got is not None and abs(got - float(sum(vals) / len(vals))) <= TOL


def test_at_k_table_keys_are_summary_ks_and_none_where_no_task_is_large_enough():
    counts = Counter({(8, 3): 2, (5, 5): 1})
    table = at_k_table(counts, 8)
    assert list(table) == ["1", "2", "4", "8"]
    assert table["8"] == 1.0 and table["1"] == pytest.approx((3 / 8 * 2 + 1) / 3)
    hat = at_k_table(counts, 8, all_k=True)
    assert hat["8"] == 0.0 and hat["4"] == pytest.approx((float(exact_pass_hat_k(8, 3, 4)) * 2 + 1) / 3)
    assert at_k_table(Counter(), 3) == {"1": None, "2": None, "3": None}


def _records(per_task: dict[str, list[bool]]):
    for t, passes in per_task.items():
        for ok in passes:
            yield {"task_id": t, "outcome": "completed", "score": float(ok), "passed": ok, "usage": None}


def test_a_summary_of_twenty_thousand_samples_keeps_the_old_figures():
    # the old summary stored every k; the new one the k of summary_ks with the same values
    per_task = {"a": [i % 3 == 0 for i in range(20000)], "b": [i % 997 == 0 for i in range(20000)],
                "c": [False] * 20000, "d": [True] * 7}
    s = summarize(_records(per_task), samples=20000)
    assert list(s["pass_at_k"]) == [str(k) for k in summary_ks(20000)] == list(s["pass_hat_k"])
    full = [(len(v), sum(v)) for v in per_task.values()]
    for k in (1, 2, 16, 1024, 20000):
        big = [(n, c) for n, c in full if n >= k]
        want_at = sum(exact_pass_at_k(n, c, k) for n, c in big) / len(big)
        want_hat = sum(exact_pass_hat_k(n, c, k) for n, c in big) / len(big)
        assert abs(s["pass_at_k"][str(k)] - float(want_at)) <= TOL
        assert abs(s["pass_hat_k"][str(k)] - float(want_hat)) <= TOL


def test_a_huge_samples_setting_gives_a_small_summary():
    # --samples 10**9 interrupted after a few records: a few dozen keys, not 10**9 (nor 10**20)
    for samples in (10**9, 10**20):
        acc = Summary()
        for r in _records({"a": [True, False, True], "b": [False]}):
            acc.add(r)
        s = acc.result(samples=samples)
        assert len(s["pass_at_k"]) == len(s["pass_hat_k"]) == samples.bit_length() + 1
        assert s["pass_at_k"]["1"] == pytest.approx((2 / 3 + 0) / 2)
        assert s["pass_at_k"]["2"] == pytest.approx(1.0) and s["pass_at_k"][str(samples)] is None
