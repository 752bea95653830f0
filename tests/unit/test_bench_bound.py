"""The benchmark's bound: its formulas, its columns in the table, and its parts really run.

(bench/ is not part of the product; these keep ``python -m bench`` honest between runs,
without asserting any speed.)
"""

from __future__ import annotations

import pytest

from bench import bound, table
from bench.imports import parse

PARTS = {
    "rt_one_us": 100.0,
    "rt_one_p50_us": 80.0,
    "rt_idle_p50_us": 300.0,
    "w3_path_p50_ms": 2.1,
    "w3_path_p95_ms": 2.9,
    "w3_path_p99_ms": 3.5,
    "rt_pipe_per_s": 50_000.0,
    "rt_pipe_each_per_s": 10_000.0,
    "commit_ms": 1.9,
    "commit_p50_ms": 1.5,
    "group_rows_s": 40_000.0,
    "batch_rows_s": 200_000.0,
    "batch_multi_rows_s": 150_000.0,
    "update_us": 10.0,
    "start_pass_ms": 20.0,
    "start_msgspec_ms": 30.0,
    "start_msgspec_lean_ms": 25.0,
}


def test_each_workload_bound_follows_its_formula() -> None:
    got = bound.figures(PARTS)
    assert got["w1"] == pytest.approx(1 / (100e-6 + 1.9e-3))  # one round trip + one commit
    assert got["w1b_async"] == 40_000  # the slower of pipelined round trips, grouped commits
    assert "w1b_threads" not in got
    assert got["w1c"] == 200_000  # the faster way of batching
    store = 1 / (10e-6 + 1.9e-3 / bound.LEASE_BATCH)
    assert got["w2"] == got["w2_async"] == pytest.approx(min(50_000, store))
    assert (got["w3_p50"], got["w3_p95"], got["w3_p99"]) == (2.1, 2.9, 3.5)
    assert got["w5_status"] == got["w5"] == 25.0  # the cheaper way to load msgspec
    assert got["w5_help"] == 20.0


def test_w3_path_adds_two_idle_round_trips_and_a_commit() -> None:
    assert bound.w3_path([100.0] * 5, [1.0] * 5) == pytest.approx(
        {"w3_path_p50_ms": 1.2, "w3_path_p95_ms": 1.2, "w3_path_p99_ms": 1.2}
    )
    spread = bound.w3_path([100.0, 200.0, 5_000.0], [1.0, 2.0])
    assert 1.2 <= spread["w3_path_p50_ms"] <= spread["w3_path_p95_ms"]
    assert spread["w3_path_p99_ms"] <= 10 + 2  # never past the slowest of each part


def test_a_missing_part_leaves_only_its_workloads_without_a_bound() -> None:
    got = bound.figures({**PARTS, "commit_ms": None})
    assert "w1" not in got and "w2" not in got
    assert got["w1c"] == 200_000


def test_medians_are_per_part_over_the_rounds_that_have_it() -> None:
    got = bound.medians(
        [{"commit_ms": 1.0}, {"commit_ms": 3.0}, {"commit_ms": 2.0, "rt_one_us": 5}]
    )
    assert got["commit_ms"] == 2.0
    assert got["rt_one_us"] == 5
    assert got["batch_rows_s"] is None


def test_the_table_shows_the_bound_and_ours_over_it_after_the_peers() -> None:
    summary = {
        "ours": {"w1": 500.0, "w3_p50": 3.0},
        "huey-sqlite": {"w1": 1_000.0, "w3_p50": 30.0},
    }
    text = table.render(summary, ["ours", "huey-sqlite"], {"w1": 1_000.0, "w3_p50": 2.0})
    header = next(line for line in text.splitlines() if "W1" not in line and "unit" in line)
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[2:] == ["ours", "huey-sqlite", "bound", "ours/huey-sqlite", "ours/bound"]
    w1 = next(line for line in text.splitlines() if line.startswith("| W1 "))
    assert [c.strip() for c in w1.strip("|").split("|")][-3:] == ["1,000", "0.50", "0.50"]
    w3 = next(line for line in text.splitlines() if line.startswith("| W3 "))
    assert [c.strip() for c in w3.strip("|").split("|")][-3:] == ["2.00", "0.10", "1.50"]


def test_without_a_bound_the_table_is_as_before() -> None:
    summary = {"ours": {"w1": 500.0}}
    assert "bound" not in table.render(summary, ["ours"])
    assert "bound" not in table.render(summary, ["ours"], {"w1": None})


def test_the_parts_table_lists_the_measured_parts() -> None:
    text = table.render_parts({"commit_ms": 1.25, "rt_one_us": None}, bound.PARTS)
    assert "1.250" in text and "COMMIT" in text
    assert "one at a time" not in text


REPORT = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:       300 |        400 | io
import time:      2000 |       2000 |       msgspec._core
import time:       500 |       2500 |     msgspec
import time:      1000 |       3500 |   semantica.protocol
import time:       200 |       3700 | semantica
some line of the command's own stderr
"""


def test_import_report_is_summarised_by_package() -> None:
    got = parse(REPORT)
    assert got.total_ms == pytest.approx(4.1)  # the outermost entries: io and semantica
    assert got.by_package["msgspec"] == pytest.approx(2.5)  # with what it imported itself
    assert got.by_package["semantica (its own modules)"] == pytest.approx(1.2)
    assert got.by_package["io"] == pytest.approx(0.4)
    assert "_io" in got.by_package  # imported by io, another package
    assert got.top(1) == [("msgspec", pytest.approx(2.5))]


@pytest.mark.slow
def test_the_parts_are_measured_on_the_real_schema_and_a_real_socket() -> None:
    """Each child runs: the migrations apply, the INSERT fits the jobs table, the server
    answers one at a time and pipelined."""
    parts = bound.measure(
        ["W1", "W1b", "W1c", "W2", "W3"], requests=20, commits=3, rows=200, starts=1
    )
    for key in (
        "rt_one_us",
        "rt_idle_p50_us",
        "w3_path_p99_ms",
        "rt_pipe_per_s",
        "rt_pipe_each_per_s",
        "commit_ms",
        "group_rows_s",
        "batch_rows_s",
        "batch_multi_rows_s",
        "batch_run_rows_s",
        "update_us",
    ):
        assert parts[key] > 0, key
    # CPU time comes in clock ticks: a few requests may cost none that shows
    assert parts["server_cpu_one_us"] >= 0 and parts["server_cpu_pipe_us"] >= 0
    assert "start_pass_ms" not in parts  # W5 was not asked for
