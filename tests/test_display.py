"""Tables printed by the command line."""

from __future__ import annotations

from rich.console import Console

from envfoundry.display import at_k, summary_table


def test_pass_at_k_shows_powers_of_two_and_the_group_size():
    values = {str(k): k / 100 for k in range(1, 65)}
    assert at_k(values) == "  ".join(f"@{k}={k / 100:.3f}" for k in (1, 2, 4, 8, 16, 32, 64))
    assert at_k({"1": 0.5, "2": None, "3": 0.7}) == "@1=0.500  @3=0.700"  # the largest k even when odd
    assert at_k({}) == "-" and at_k({"1": None}) == "-"


def test_summary_table_of_a_large_group_stays_one_short_row():
    summary = {"n_trajectories": 640, "n_tasks": 10, "samples": 64, "pass_rate": 0.25, "pass_rate_ci": [0.2, 0.3],
               "mean_score": 0.25, "pass_at_k": {str(k): min(1.0, k / 64) for k in range(1, 65)},
               "outcomes": {"completed": 640}, "n_errors": 0}
    console = Console(record=True, width=200)
    console.print(summary_table(summary))
    text = console.export_text()
    assert "@64=1.000" in text and "@32=0.500" in text and "@3=" not in text and "@63=" not in text
