"""Starting semanticad: bad settings and broken handler modules fail fast with one clear line."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from full_disk import FullDisk, full_disk_fixture  # noqa: F401  # the fixture it provides
from harness import Daemon

from semantica.supervisor.store.sqlite import migrations

ROOT = Path(__file__).resolve().parents[2]
LATEST = migrations()[-1][0]


def _run_semanticad(daemon: Daemon, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "semantica.supervisor", *args],
        env=daemon.env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_handler_module_that_does_not_import_stops_the_start(short_tmp: Path) -> None:
    """A missing handler module: the worker's error is shown and semanticad exits 1."""
    daemon = Daemon(home=short_tmp / "home")
    result = _run_semanticad(daemon, "--workers", "1", "--handlers", "no_such_handlers_mod")
    assert result.returncode == 1
    assert "no_such_handlers_mod" in result.stderr
    assert "semanticad: worker" in result.stderr
    assert not daemon.socket.exists()


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--workers", "zero"], {}, "--workers must be a number"),
        ([], {"SEMANTICA_DRAIN_TIMEOUT": "-5"}, "SEMANTICA_DRAIN_TIMEOUT"),
        ([], {"SEMANTICA_POWER": "solar"}, "SEMANTICA_POWER"),
    ],
)
def test_bad_setting_exits_2_with_one_line(
    short_tmp: Path, args: list[str], env: dict[str, str], needle: str
) -> None:
    """A malformed setting is named in a one-line error and nothing is created."""
    daemon = Daemon(home=short_tmp / "home")
    result = _run_semanticad(daemon, *args, **env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and needle in result.stderr
    assert not daemon.home.exists()


def test_state_directory_open_to_others_is_refused(short_tmp: Path) -> None:
    """A group- or world-accessible state directory is refused with the chmod that fixes it."""
    home = short_tmp / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    result = _run_semanticad(Daemon(home=home), "--workers", "1")
    assert result.returncode == 2
    assert f"chmod 700 {home}" in result.stderr


def test_second_supervisor_on_the_same_home_is_refused(daemon: Daemon) -> None:
    """Only one semanticad per state directory: the second exits at once naming the first's pid."""
    result = _run_semanticad(daemon, "--workers", "1")
    assert result.returncode == 2
    assert daemon.proc is not None and f"pid {daemon.proc.pid}" in result.stderr
    assert daemon.semctl("status").code == 0  # the first one still serves


@pytest.mark.slow
def test_the_wheel_ships_the_migrations(tmp_path: Path) -> None:
    """A plain (non-editable) install carries sql/, so it can create a database."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("semantica-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "semantica/sql/001_initial.sql" in names


def _modes(home: Path) -> dict[str, int]:
    return {
        path.name: stat.S_IMODE(path.stat().st_mode)
        for path in [home, *home.iterdir()]
        if not path.name.endswith(".sock")
    }


def test_migrate_on_a_new_home_creates_the_schema_with_private_modes(short_tmp: Path) -> None:
    """`semanticad migrate` where nothing exists yet: the state directory and the database
    are made (0700, 0600, whatever the caller's umask) at the newest schema; a second
    run says there is nothing to do; a supervisor then starts on it and runs a job."""
    daemon = Daemon(home=short_tmp / "deep" / "home")
    old_umask = os.umask(0o022)  # what a shell usually has: files 0644 unless made private
    try:
        made = _run_semanticad(daemon, "migrate")
    finally:
        os.umask(old_umask)
    assert made.returncode == 0, made.stderr
    assert made.stderr == ""
    assert made.stdout.count("\n") == 1 and f"schema {LATEST}" in made.stdout, made.stdout
    assert "created" in made.stdout
    modes = _modes(daemon.home)
    assert modes[daemon.home.name] == 0o700
    assert modes["semantica.db"] == 0o600
    assert all(mode == 0o600 for name, mode in modes.items() if name != daemon.home.name), modes
    with sqlite3.connect(daemon.home / "semantica.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
    conn.close()
    again = _run_semanticad(daemon, "migrate")
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout and again.stdout.count("\n") == 1, again.stdout
    daemon.start()
    try:
        assert daemon.semctl("wait", daemon.semctl("enqueue", "NOOP").out.strip()).code == 0
    finally:
        assert not daemon.stop_for_good()


def test_migrate_to_an_older_schema_on_a_new_home_creates_that_schema(short_tmp: Path) -> None:
    """`semanticad migrate --to 1` on a new home makes schema 1; a later start upgrades it."""
    daemon = Daemon(home=short_tmp / "home")
    made = _run_semanticad(daemon, "migrate", "--to", "1")
    assert made.returncode == 0, made.stderr
    assert "schema 1" in made.stdout and "created" in made.stdout, made.stdout
    with sqlite3.connect(daemon.home / "semantica.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()
    assert _modes(daemon.home)["semantica.db"] == 0o600


def test_the_schema_upgrade_at_start_is_logged(daemon: Daemon) -> None:
    """A start that upgrades the schema says so: from and to which version, where the
    copy taken first is, how long it took (on stderr and in daemon.log); a first start
    says it created the database."""
    created = [e for e in daemon.events() if e["event"] == "database created"]
    assert len(created) == 1 and created[0]["schema_version"] == LATEST, daemon.log()
    assert created[0]["path"] == str(daemon.home / "semantica.db")
    daemon.stop()
    down = _run_semanticad(daemon, "migrate", "--to", "1")
    assert down.returncode == 0, down.stderr
    daemon.start()
    [started] = [e for e in daemon.events() if e["event"] == "upgrading the database schema"]
    [upgraded] = [e for e in daemon.events() if e["event"] == "database schema upgraded"]
    assert (started["from_version"], started["to_version"]) == (1, LATEST)
    assert (upgraded["from_version"], upgraded["to_version"]) == (1, LATEST)
    backup = Path(upgraded["backup"])
    assert backup.parent == daemon.home / "backups" and backup.is_file()
    assert isinstance(upgraded["duration_ms"], float) and upgraded["duration_ms"] >= 0
    assert upgraded["path"] == str(daemon.home / "semantica.db")
    in_file = [
        line for line in (daemon.home / "daemon.log").read_text().splitlines() if "upgraded" in line
    ]
    assert len(in_file) == 1 and str(backup) in in_file[0]
    assert not [e for e in daemon.events() if e["event"] == "database created"]


@pytest.mark.slow
@pytest.mark.parametrize("existing", [False, True], ids=["new-home", "existing-home"])
def test_a_start_on_a_full_disk_says_so_in_one_line(full_disk: FullDisk, existing: bool) -> None:
    """No room to start (a new state directory, or one with jobs whose database needs
    room to open): semanticad exits 1 with one line saying the disk is full, not a
    traceback nor a bare "disk I/O error"; once there is room it starts, jobs intact."""
    daemon = full_disk.daemon
    job_id = None
    if existing:
        daemon.start()
        job_id = int(daemon.semctl("enqueue", "NOOP", "--delay", "3600").out)
        assert daemon.stop() == 0
    started = subprocess.run(
        [sys.executable, "-m", "semantica.supervisor", "--workers", "1"],
        env=daemon.env(),
        capture_output=True,
        text=True,
        timeout=60,
        **full_disk.fill_before_start(),  # type: ignore[arg-type]
    )
    assert started.returncode == 1, started.stderr
    assert started.stderr.count("\n") == 1 and "Traceback" not in started.stderr, started.stderr
    assert "the disk is full" in started.stderr, started.stderr
    full_disk.free()
    daemon.start()
    if job_id is not None:
        with daemon.client() as client:
            assert client.get(job_id).state == "QUEUED"
