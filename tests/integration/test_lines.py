"""The line reader the integration tests follow `semctl tail` with."""

from __future__ import annotations

import os
import sys

from lines import Lines

#: Writes two lines in one write, then waits to be terminated.
TWO_AT_ONCE = "import os, signal; os.write(1, b'first\\nsecond\\n'); signal.pause()"


def test_lines_that_came_in_one_chunk_are_each_returned() -> None:
    """A buffered text stream reads both lines ahead; a `select` on it then waits for
    nothing (a test of `semctl tail` timed out so in CI with its line already read)."""
    lines = Lines([sys.executable, "-c", TWO_AT_ONCE], dict(os.environ))
    try:
        assert lines.next() == "first"
        assert lines.poll(5) == "second"
        assert lines.poll(0.1) is None
    finally:
        lines.close()
