"""``python -m bench.imports``: what each semctl command imports, and what that costs.

W5 times each semctl command a person types as a new process; most of such a
process's time is its imports. This runs each command of W5 (bench/ours.py's
``semctl_commands``) once under ``python -X importtime`` against a fresh
``semanticad`` (a job DONE with a log line, for show, wait and logs), and
summarises CPython's report: the command's wall time, the time of all its imports,
the top-level packages that took the most (cumulative: a package with what it
imported itself, counted where the command, or the interpreter's start-up, first
asked for it), and Semantica's own modules apart, with the three that took longest.

Its figures are those of one run, slower than the W5 medians by the report's own
cost; read them as shares. ``--top N`` packages per command (8), ``--json FILE``.
A command that fails prints its exit status and stderr's last line instead.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench.ours import SEMCTL, semctl_commands
from bench.semantica_engine import Engine
from bench.starts import start_env
from semantica import Client

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)$")


@dataclass
class Imports:
    """One process's imports: ``total_ms`` of all of them; ``by_package`` per top-level
    package, the cumulative ms of its entry points (where a module of another package, or
    the interpreter's start-up, imported it; so a package's figure includes the packages
    it brought in itself), and for ``semantica`` its own modules' time alone."""

    total_ms: float = 0.0
    by_package: dict[str, float] = field(default_factory=dict)
    own: dict[str, float] = field(default_factory=dict)  # semantica's modules, self ms each

    def top(self, count: int) -> list[tuple[str, float]]:
        return sorted(self.by_package.items(), key=lambda kv: -kv[1])[:count]

    def top_own(self, count: int) -> list[tuple[str, float]]:
        return sorted(self.own.items(), key=lambda kv: -kv[1])[:count]


OWN = "semantica"


def parse(report: str) -> Imports:
    """Summarise ``-X importtime``'s lines (others, such as a command's own stderr, are
    passed over). CPython prints a module after the modules it imported, one level of
    indentation deeper: a module's importer is the next line less indented."""
    entries = []
    for line in report.splitlines():
        match = _LINE.match(line)
        if match:
            entries.append((len(match[3]), int(match[1]), int(match[2]), match[4]))
    if not entries:
        return Imports()
    outer = min(depth for depth, _, _, _ in entries)
    by_package: dict[str, float] = defaultdict(float)
    own: dict[str, float] = {}
    importer: list[str | None] = []  # the root package of each entry's importer
    waiting: list[int] = []  # entries whose importer is not printed yet, deepest last
    for i, (depth, _, _, name) in enumerate(entries):
        importer.append(None)
        while waiting and entries[waiting[-1]][0] > depth:
            importer[waiting.pop()] = name.split(".")[0]
        waiting.append(i)
    total = 0.0
    for (depth, self_us, cumulative_us, name), by in zip(entries, importer, strict=True):
        root = name.split(".")[0]
        if depth == outer:
            total += cumulative_us / 1e3
        if root == OWN:
            by_package[f"{OWN} (its own modules)"] += self_us / 1e3
            own[name] = self_us / 1e3
        elif root != by:
            by_package[root] += cumulative_us / 1e3
    return Imports(total_ms=total, by_package=dict(by_package), own=own)


def measure(top: int) -> dict[str, dict[str, object]]:
    """Each W5 command once under ``-X importtime``: its wall time and import summary."""
    out: dict[str, dict[str, object]] = {}
    with Engine(workers=1) as engine, Client(home=engine.home) as client:
        job = client.enqueue("LOGGED")
        client.wait(job.id, timeout=30)
        env = start_env(engine.env())
        for key, argv in semctl_commands(job.id).items():
            command = ["semctl", *argv]
            subprocess.run([SEMCTL, *argv], env=env, capture_output=True, check=False)  # warm
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-X", "importtime", SEMCTL, *argv],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            wall_ms = (time.perf_counter() - t0) * 1e3
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or [""])[-1]
                out[key] = {"command": command, "failed": f"exit {done.returncode}: {tail}"}
                continue
            imports = parse(done.stderr)
            out[key] = {
                "command": command,
                "wall_ms": round(wall_ms, 1),
                "imports_ms": round(imports.total_ms, 1),
                "top": [[name, round(ms, 1)] for name, ms in imports.top(top)],
                "top_own": [[name, round(ms, 1)] for name, ms in imports.top_own(3)],
            }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.imports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--top", type=int, default=8, help="packages shown per command")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = measure(args.top)
    for entry in results.values():
        command = " ".join(str(a) for a in entry["command"])  # type: ignore[attr-defined]
        if "failed" in entry:
            print(f"{command}: FAILED, {entry['failed']}")
            continue
        print(f"{command}: {entry['wall_ms']:.0f} ms, imports {entry['imports_ms']:.0f} ms")
        for name, ms in entry["top"]:  # type: ignore[attr-defined]
            print(f"    {ms:7.1f} ms  {name}")
        top_own = entry["top_own"]
        own = ", ".join(f"{n} {ms:.1f}" for n, ms in top_own)  # type: ignore[attr-defined]
        print(f"    of which most: {own} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
