"""The chaos scenarios' one-line summaries, repeated at the end of a test run.

A scenario reports its line as a property of its test's report (``CHAOS_SUMMARY``);
the hooks in tests/conftest.py collect them from the reports, which reach the
process that prints the run's end also when tests run in worker processes
(pytest-xdist), where a list kept in the scenario's own process would not.
"""

from __future__ import annotations

from typing import Any

import pytest

CHAOS_SUMMARY = "chaos summary"

_summaries: list[str] = []


def collect(report: pytest.TestReport) -> None:
    """Keep the summary lines a finished test reported."""
    if report.when == "call":
        _summaries.extend(line for name, line in report.user_properties if name == CHAOS_SUMMARY)


def print_them(terminalreporter: Any) -> None:
    """Print the lines kept, under their own heading (nothing if there are none)."""
    if _summaries:
        terminalreporter.section("chaos scenarios")
        for line in _summaries:
            terminalreporter.write_line(line)
