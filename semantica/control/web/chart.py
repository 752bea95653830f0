"""The dashboard's chart of the last hour: jobs per minute, as shapes for an inline SVG.

Contract:

* :func:`hour_chart` turns the supervisor's counts by the minute (oldest first, each
  with its ``start`` and its ``enqueued``, ``finished`` and ``failed`` counts; failed
  jobs are counted in ``finished`` too) into a :class:`Chart`: plain numbers and
  strings the template draws as SVG elements. No chart library and no script: the
  page's Content-Security-Policy runs none, and a fragment redrawn each second must
  stay small (a bar per minute, a line, a few labels).
* Each minute is a column: a bar of the jobs finished in it, its failed part drawn
  over its foot, and a line through the jobs enqueued. Every column carries a title
  (the tooltip) with the minute's figures, so the exact numbers are a hover away.
* The vertical scale rounds up to 1, 2 or 5 times a power of ten, so its one label
  reads well; an hour with no job at all draws an empty frame (scale 1). The times
  below are the quarter hours, but for one too near the right edge to be read whole.
* Shapes carry classes (``finished``, ``failed``, ``enqueued``), never styles:
  app.css colours them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

#: The SVG's own coordinates (it scales to the page's width).
WIDTH = 600.0
HEIGHT = 110.0
#: Room for the scale's label on the left and the times below.
LEFT = 34.0
BOTTOM = 16.0
TOP = 4.0
#: A time label every this many minutes (on the clock: :00, :15, :30, :45).
TICK_MINUTES = 15
#: The room a label ("17:45", at the 9px app.css gives it) takes right of its minute: a
#: label with less room before the frame's edge is left out rather than cut in half.
LABEL_WIDTH = 28.0


class MinuteCounts(Protocol):
    """What the chart reads of one minute (the protocol's ``MinuteCounts``)."""

    @property
    def start(self) -> datetime: ...
    @property
    def enqueued(self) -> int: ...
    @property
    def finished(self) -> int: ...
    @property
    def failed(self) -> int: ...


@dataclass(frozen=True)
class Column:
    """One minute: its slot (for the tooltip), its finished bar and its failed part."""

    x: float  # the whole slot (the tooltip's area)
    width: float
    bar_x: float  # the bars, a little narrower, so columns stand apart
    bar_w: float
    title: str
    finished_y: float
    finished_h: float
    failed_y: float
    failed_h: float


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: float
    height: float
    left: float
    plot_top: float
    plot_bottom: float
    scale: int  # the count at the top of the frame
    columns: list[Column]
    enqueued: str  # the line's points: "x,y x,y ..."
    ticks: list[Tick]
    finished: int  # the hour's totals
    failed: int
    enqueued_total: int


def nice_ceiling(value: int) -> int:
    """The least of 1, 2, 5, 10, 20, 50, ... that is at least ``value`` (1 for 0)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def _label(start: datetime) -> str:
    return start.astimezone().strftime("%H:%M")


def hour_chart(minutes: Sequence[MinuteCounts]) -> Chart | None:
    """The chart of ``minutes`` (oldest first); None when there are none to draw."""
    if not minutes:
        return None
    scale = nice_ceiling(max(max(m.finished, m.enqueued, m.failed) for m in minutes))
    plot_bottom = HEIGHT - BOTTOM
    plot_h = plot_bottom - TOP
    slot = (WIDTH - LEFT) / len(minutes)
    gap = min(1.0, slot / 4)

    def y(count: int) -> float:
        return round(plot_bottom - plot_h * min(count, scale) / scale, 2)

    columns: list[Column] = []
    points: list[str] = []
    ticks: list[Tick] = []
    for i, m in enumerate(minutes):
        x = LEFT + i * slot
        failed = min(m.failed, m.finished)
        columns.append(
            Column(
                x=round(x, 2),
                width=round(slot, 2),
                bar_x=round(x + gap / 2, 2),
                bar_w=round(slot - gap, 2),
                title=(
                    f"{_label(m.start)}: {m.finished} finished, {m.failed} failed, "
                    f"{m.enqueued} enqueued"
                ),
                finished_y=y(m.finished),
                finished_h=round(plot_bottom - y(m.finished), 2),
                failed_y=y(failed),
                failed_h=round(plot_bottom - y(failed), 2),
            )
        )
        points.append(f"{round(x + slot / 2, 2)},{y(m.enqueued)}")
        local = m.start.astimezone()
        if local.minute % TICK_MINUTES == 0 and x + LABEL_WIDTH <= WIDTH:
            ticks.append(Tick(x=round(x, 2), label=_label(m.start)))
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        plot_top=TOP,
        plot_bottom=plot_bottom,
        scale=scale,
        columns=columns,
        enqueued=" ".join(points),
        ticks=ticks,
        finished=sum(m.finished for m in minutes),
        failed=sum(m.failed for m in minutes),
        enqueued_total=sum(m.enqueued for m in minutes),
    )
