"""The figures the benchmark reports: medians over rounds, ratios ours/peer and ours/bound,
the printed tables.

The bound (bench/bound.py) is not an engine: it is one more column, "bound", beside the
engines' medians, and one more ratio, "ours/bound", after the ratios to the peers.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

OURS = "ours"

Figures = dict[str, float | None]  # one round of one engine: metric key -> value (None: n/a)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    digits: int = 0


METRICS: tuple[Metric, ...] = (
    Metric("w1", "W1 enqueue, 1 client, 1 job per request", "jobs/s", True),
    Metric("w1b_threads", "W1b enqueue, 8 client threads", "jobs/s", True),
    Metric("w1b_async", "W1b enqueue, 1 pipelining AsyncClient", "jobs/s", True),
    Metric("w1c", "W1c enqueue, batch API", "jobs/s", True),
    Metric("w2", "W2 drain queued no-op jobs, 2 workers", "jobs/s", True),
    Metric("w2_async", "W2 drain, async def no-op handler", "jobs/s", True),
    Metric("w3_p50", "W3 start latency p50", "ms", False, 2),
    Metric("w3_p95", "W3 start latency p95", "ms", False, 2),
    Metric("w3_p99", "W3 start latency p99", "ms", False, 2),
    Metric("w4_rss_main_idle", "W4 RSS supervisor/consumer, idle", "MB", False, 1),
    Metric("w4_rss_all_idle", "W4 RSS all processes, idle", "MB", False, 1),
    Metric("w4_rss_main_after", "W4 RSS supervisor/consumer, after W2", "MB", False, 1),
    Metric("w4_rss_all_after", "W4 RSS all processes, after W2", "MB", False, 1),
    Metric("w4_cpu_main_idle", "W4 CPU supervisor/consumer, idle", "% CPU", False, 2),
    Metric("w4_cpu_all_idle", "W4 CPU all processes, idle", "% CPU", False, 2),
    Metric("w5", "W5 new process: semctl enqueue (peers: python -c)", "ms", False),
    Metric("w5_py", "W5 new process: python -c, client API", "ms", False),
    Metric("w5_status", "W5 new process: semctl status", "ms", False),
    Metric("w5_list", "W5 new process: semctl list", "ms", False),
    Metric("w5_show", "W5 new process: semctl show ID", "ms", False),
    Metric("w5_wait", "W5 new process: semctl wait ID (a done job)", "ms", False),
    Metric("w5_logs", "W5 new process: semctl logs ID", "ms", False),
    Metric("w5_help", "W5 new process: semctl --help", "ms", False),
)
BY_KEY = {m.key: m for m in METRICS}


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def medians(rounds: Iterable[Mapping[str, float | None]]) -> Figures:
    """Per metric, the median of the rounds that have a figure (None if none has)."""
    rounds = list(rounds)
    out: Figures = {}
    for metric in METRICS:
        values = [r[metric.key] for r in rounds if r.get(metric.key) is not None]
        out[metric.key] = statistics.median(values) if values else None  # type: ignore[type-var]
    return out


def ratios(summary: Mapping[str, Figures]) -> dict[str, Figures]:
    """ours/peer per metric and peer (None where either side has no figure)."""
    ours = summary.get(OURS, {})
    out: dict[str, Figures] = {}
    for peer, figures in summary.items():
        if peer == OURS:
            continue
        out[peer] = {}
        for metric in METRICS:
            a, b = ours.get(metric.key), figures.get(metric.key)
            out[peer][metric.key] = a / b if a is not None and b else None
    return out


def best_peer(summary: Mapping[str, Figures], peers: Sequence[str]) -> dict[str, str | None]:
    """Per metric, the peer with the best figure (None where no peer has one)."""
    out: dict[str, str | None] = {}
    for metric in METRICS:
        have = [
            (summary[p][metric.key], p) for p in peers if summary[p].get(metric.key) is not None
        ]
        pick = max if metric.higher_is_better else min
        out[metric.key] = pick(have)[1] if have else None
    return out


def ratios_vs_best(
    summary: Mapping[str, Figures], ours: Sequence[str], peers: Sequence[str]
) -> dict[str, Figures]:
    """Each of ``ours`` over the best peer, per metric (None where either has no figure)."""
    best = best_peer(summary, peers)
    out: dict[str, Figures] = {}
    for name in ours:
        out[name] = {}
        for metric in METRICS:
            peer = best[metric.key]
            a = summary[name].get(metric.key)
            b = summary[peer].get(metric.key) if peer is not None else None
            out[name][metric.key] = a / b if a is not None and b else None
    return out


def _value(metric: Metric, value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.{metric.digits}f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 0.1 else f"{value:.2f}"


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    """A pipe table (Markdown), columns padded so that it also reads in a terminal."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if i else "-" * (w + 2) for i, w in enumerate(widths))
        + "|"
    )
    return [line(header), rule, *(line(r) for r in rows)]


def over_bound(ours: Mapping[str, float | None], bound: Mapping[str, float | None]) -> Figures:
    """ours/bound per metric (None where either has no figure)."""
    out: Figures = {}
    for metric in METRICS:
        a, b = ours.get(metric.key), bound.get(metric.key)
        out[metric.key] = a / b if a is not None and b else None
    return out


def render(
    summary: Mapping[str, Figures],
    order: Sequence[str],
    bound: Mapping[str, float | None] | None = None,
) -> str:
    """Two tables, higher-is-better figures first: medians, then ours/peer per peer.

    The ratio columns say which way is better: in the first table ours/peer > 1
    means Semantica is better, in the second < 1 does. With ``bound`` (metric key
    -> figure), the columns "bound" and "ours/bound" follow the engines' figures and
    the ratios: ours/bound is at most about 1 in the first table, at least about 1
    in the second, and 1 means ours pays nothing beyond its bare parts.
    """
    peers = [name for name in order if name != OURS and name in summary]
    names = [name for name in order if name in summary]
    cut = {OURS: summary.get(OURS, {})} if OURS in summary else {}
    ratio = ratios({**cut, **{p: summary[p] for p in peers}}) if cut else {}
    bound = bound if bound and any(v is not None for v in bound.values()) else None
    vs_bound = over_bound(summary.get(OURS, {}), bound) if bound is not None else {}
    out: list[str] = []
    for higher in (True, False):
        metrics = [
            m
            for m in METRICS
            if m.higher_is_better == higher
            and any(summary[n].get(m.key) is not None for n in names)
        ]
        if not metrics:
            continue
        title = "higher is better" if higher else "lower is better"
        if ratio:
            title += f": ours/peer {'>' if higher else '<'} 1 means ours is better"
        header = [title, "unit", *names]
        if bound is not None:
            header.append("bound")
        if ratio:
            header += [f"ours/{p}" for p in peers]
        if bound is not None:
            header.append("ours/bound")
        rows = []
        for m in metrics:
            row = [m.label, m.unit, *(_value(m, summary[n].get(m.key)) for n in names)]
            if bound is not None:
                row.append(_value(m, bound.get(m.key)))
            if ratio:
                row += [_ratio(ratio[p][m.key]) for p in peers]
            if bound is not None:
                row.append(_ratio(vs_bound.get(m.key)))
            rows.append(row)
        out += [*_grid(header, rows), ""]
    return "\n".join(out).rstrip() + "\n"


def render_parts(
    parts: Mapping[str, float | None], described: Mapping[str, tuple[str, str, int]]
) -> str:
    """The bound's parts (median over rounds), one row each: ``described`` is key ->
    (label, unit, digits), as bench/bound.py's PARTS."""
    rows = [
        [label, unit, "n/a" if parts.get(key) is None else f"{parts[key]:,.{digits}f}"]
        for key, (label, unit, digits) in described.items()
        if parts.get(key) is not None
    ]
    if not rows:
        return ""
    return "\n".join(_grid(["the bound's parts (median of rounds)", "unit", "bound"], rows)) + "\n"


def render_vs_best(
    summary: Mapping[str, Figures], ours: Sequence[str], peers: Sequence[str]
) -> str:
    """Two tables like :func:`render`, for several engines of ours (the PostgreSQL run: 1, 2
    and 3 nodes): the medians, which peer is best, then each of ours over that best peer."""
    ours = [name for name in ours if name in summary]
    peers = [name for name in peers if name in summary]
    names = [*ours, *peers]
    best = best_peer(summary, peers)
    ratio = ratios_vs_best(summary, ours, peers)
    out: list[str] = []
    for higher in (True, False):
        metrics = [
            m
            for m in METRICS
            if m.higher_is_better == higher
            and any(summary[n].get(m.key) is not None for n in names)
        ]
        if not metrics:
            continue
        title = "higher is better" if higher else "lower is better"
        title += f": ours/best peer {'>' if higher else '<'} 1 means ours is better"
        header = [title, "unit", *names, "best peer", *(f"{o}/best peer" for o in ours)]
        rows = []
        for m in metrics:
            row = [m.label, m.unit, *(_value(m, summary[n].get(m.key)) for n in names)]
            row += [best[m.key] or "-", *(_ratio(ratio[o][m.key]) for o in ours)]
            rows.append(row)
        out += [*_grid(header, rows), ""]
    return "\n".join(out).rstrip() + "\n"
