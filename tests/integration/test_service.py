"""``semctl service``: the unit and the plist it renders, and what it runs to install them.

Every run uses a temporary HOME and XDG_CONFIG_HOME and a PATH of our own: an
empty directory (no systemctl, no launchctl), or one holding fake ones that
record how they were called. Nothing here touches the real service manager.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import BIN, SEMCTL, Result

ROOT = Path(__file__).resolve().parents[2]
SEMANTICAD = str(BIN / "semanticad")
UNIT = "semantica.service"
LABEL = "dev.semantica.semanticad"
SETTINGS = {
    "SEMANTICA_WORKERS": "3",
    "SEMANTICA_HANDLERS": "my_handlers,100%_handlers",  # a % must reach systemd as %%
    "SEMANTICA_DRAIN_TIMEOUT": "100",  # raises the stop timeout to 100 + 5 + 10
}

# A stand-in for systemctl and launchctl: logs each call, keeps the service's
# state in a file, answers like the real one. FAKE_FAIL=word fails the call
# whose arguments contain that word.
FAKE_TOOL = """\
import os, sys
from pathlib import Path

name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join([name, *args]) + "\\n")
state = Path(os.environ["FAKE_STATE"])
active = state.exists() and state.read_text() == "active"
if os.environ.get("FAKE_FAIL") in args:
    sys.exit("Job for semantica.service failed.\\nSee the journal.")
if name == "systemctl":
    if "is-active" in args:
        print("active" if active else "inactive")
        sys.exit(0 if active else 3)
    if "enable" in args or "restart" in args:
        state.write_text("active")
    if "disable" in args:
        state.write_text("inactive")
elif args[0] == "print" and args[1].count("/") == 2:
    if not active:
        sys.exit(113)
    print("\\tstate = running\\n\\tpid = 4242")
elif args[0] == "bootstrap":
    if active:
        sys.exit("Bootstrap failed: 5: Input/output error")
    state.write_text("active")
elif args[0] == "bootout":
    state.write_text("inactive")
"""


@dataclass
class Sandbox:
    """A temporary home for semctl service, and the files it should or should not touch."""

    root: Path
    env: dict[str, str]

    @property
    def home(self) -> Path:
        return Path(self.env["HOME"])

    @property
    def unit(self) -> Path:
        return Path(self.env["XDG_CONFIG_HOME"]) / "systemd" / "user" / UNIT

    @property
    def plist(self) -> Path:
        return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if p.is_file())

    def semctl(self, *args: str) -> Result:
        run = subprocess.run(
            [SEMCTL, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        return Result(run.returncode, run.stdout, run.stderr)

    def fake_tools(self) -> None:
        """Put recording fakes of systemctl and launchctl on PATH."""
        for name in ("systemctl", "launchctl"):
            tool = Path(self.env["PATH"]) / name
            tool.write_text(f"#!{sys.executable}\n{FAKE_TOOL}")
            tool.chmod(0o755)
        self.env["FAKE_LOG"] = str(self.root / "calls.log")
        self.env["FAKE_STATE"] = str(self.root / "state")

    def calls(self) -> list[str]:
        log = Path(self.env["FAKE_LOG"])
        calls = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return calls


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """A sandbox with the settings above exported and no service manager on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SEMANTICA_", "XDG_", "DBUS_", "NOTIFY_"))
    }
    (tmp_path / "bin").mkdir()
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PATH=str(tmp_path / "bin"),
        **SETTINGS,
    )
    return Sandbox(root=tmp_path, env=env)


def _one_line(result: Result) -> str:
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("semctl: ")
    return lines[0]


def test_dry_run_prints_a_unit_that_runs_this_installation(sandbox: Sandbox) -> None:
    """--dry-run prints a unit running this venv's semanticad with the settings; writes nothing."""
    result = sandbox.semctl("service", "install", "--dry-run", "--systemd")
    assert result.code == 0, result.err
    assert re.search(rf"^ExecStart={re.escape(SEMANTICAD)}$", result.out, re.M)
    assert "\nEnvironment=SEMANTICA_WORKERS=3\n" in result.out
    assert "\nEnvironment=SEMANTICA_HANDLERS=my_handlers,100%%_handlers\n" in result.out
    assert "\nEnvironment=SEMANTICA_DRAIN_TIMEOUT=100\n" in result.out
    assert "\nTimeoutStopSec=115\n" in result.out
    for directive in ("Type=notify", "KillMode=mixed", "Restart=on-failure", "#WatchdogSec="):
        assert f"\n{directive}" in result.out
    assert "@" not in re.sub(r"^#.*$", "", result.out, flags=re.M)  # every marker filled in
    assert str(sandbox.unit) in result.err
    assert "  systemctl --user daemon-reload\n" in result.err
    assert f"  systemctl --user enable --now {UNIT}\n" in result.err
    assert sandbox.files() == []


def test_an_endless_drain_gives_a_service_that_waits_for_it(sandbox: Sandbox) -> None:
    """SEMANTICA_DRAIN_TIMEOUT=inf (which semanticad takes) renders as no stop limit:
    systemd's infinity, launchd's 0; it used to crash semctl with a traceback."""
    sandbox.env["SEMANTICA_DRAIN_TIMEOUT"] = "inf"
    unit = sandbox.semctl("service", "install", "--dry-run", "--systemd")
    assert unit.code == 0, unit.err
    assert "\nTimeoutStopSec=infinity\n" in unit.out
    plist = sandbox.semctl("service", "install", "--dry-run", "--launchd")
    assert plist.code == 0, plist.err
    assert plistlib.loads(plist.out.encode())["ExitTimeOut"] == 0
    assert sandbox.files() == []


def test_dry_run_unit_passes_systemd_analyze_verify(sandbox: Sandbox, tmp_path: Path) -> None:
    """systemd-analyze verify --user accepts the rendered unit, without a warning."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = sandbox.semctl("service", "install", "--dry-run", "--systemd")
    assert result.code == 0, result.err
    copy = tmp_path / "verify" / UNIT
    copy.parent.mkdir()
    copy.write_text(result.out)
    runtime = tmp_path / "runtime"  # --user wants a runtime directory, even for verify
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    verify = subprocess.run(
        [analyze, "verify", "--user", str(copy)], env=env, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == "", verify.stderr  # e.g. "Unknown key ..., ignoring"


def test_launchd_dry_run_prints_a_plist_that_plistlib_parses(sandbox: Sandbox) -> None:
    """--launchd --dry-run prints a plist of this semanticad and the settings; writes nothing."""
    result = sandbox.semctl("service", "install", "--launchd", "--dry-run")
    assert result.code == 0, result.err
    agent = plistlib.loads(result.out.encode())
    assert agent["Label"] == LABEL
    assert agent["ProgramArguments"] == [SEMANTICAD]
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["ExitTimeOut"] == 115
    assert agent["EnvironmentVariables"] == {"SEMANTICA_LOG_FORMAT": "json", **SETTINGS}
    log = str(sandbox.home / "Library" / "Logs" / "semantica" / "semanticad.log")
    assert agent["StandardOutPath"] == agent["StandardErrorPath"] == log
    assert f"  launchctl bootstrap gui/{os.getuid()} {sandbox.plist}\n" in result.err
    assert sandbox.files() == []


def test_semctl_home_flag_and_relative_paths_reach_the_service(sandbox: Sandbox) -> None:
    """semctl --home beats SEMANTICA_HOME, made absolute; a set log format replaces the default."""
    sandbox.env.update(SEMANTICA_HOME="/elsewhere", SEMANTICA_LOG_FORMAT="pretty")
    result = sandbox.semctl("--home", "~/state", "service", "install", "--dry-run", "--systemd")
    assert result.code == 0, result.err
    assert f"\nEnvironment=SEMANTICA_HOME={sandbox.home / 'state'}\n" in result.out
    assert "/elsewhere" not in result.out
    assert re.findall(r"^Environment=SEMANTICA_LOG_FORMAT=.*$", result.out, re.M) == [
        "Environment=SEMANTICA_LOG_FORMAT=pretty"
    ]


@pytest.mark.parametrize("platform", ["--systemd", "--launchd"])
def test_a_bad_setting_is_refused_with_one_line(sandbox: Sandbox, platform: str) -> None:
    """A SEMANTICA_* value the supervisor would refuse stops the install (exit 2), dry run too."""
    sandbox.env["SEMANTICA_WORKERS"] = "many"
    for args in (["--dry-run"], []):
        result = sandbox.semctl("service", "install", platform, *args)
        assert result.code == 2
        assert "SEMANTICA_WORKERS" in _one_line(result)
    assert sandbox.files() == []


@pytest.mark.parametrize(
    ("platform", "tool"), [("--systemd", "systemctl"), ("--launchd", "launchctl")]
)
def test_install_without_the_service_manager_exits_2_and_writes_nothing(
    sandbox: Sandbox, platform: str, tool: str
) -> None:
    """Without systemctl (launchctl) on PATH, install exits 2 with one line and writes nothing."""
    result = sandbox.semctl("service", "install", platform)
    assert result.code == 2
    assert f"{tool} not found" in _one_line(result)
    assert result.out == ""
    assert sandbox.files() == []


def test_status_json_when_nothing_is_installed(sandbox: Sandbox) -> None:
    """status --json says not installed, and why the state is unknown, exit 0."""
    result = sandbox.semctl("service", "status", "--json", "--systemd")
    assert result.code == 0, result.err
    assert result.json() == {
        "platform": "systemd",
        "file": str(sandbox.unit),
        "installed": False,
        "semanticad": None,
        "this_installation": None,
        "state": None,
        "error": "systemctl not found: this needs systemd (on macOS: --launchd)",
    }


@pytest.mark.parametrize("platform", ["--systemd", "--launchd"])
def test_uninstall_dry_run_prints_the_commands_and_removes_nothing(
    sandbox: Sandbox, platform: str
) -> None:
    """uninstall --dry-run on an installed service lists the commands and leaves the file."""
    path = sandbox.unit if platform == "--systemd" else sandbox.plist
    path.parent.mkdir(parents=True)
    path.write_text("installed earlier\n")
    result = sandbox.semctl("service", "uninstall", "--dry-run", platform)
    assert result.code == 0, result.err
    if platform == "--systemd":
        expected = [
            f"systemctl --user disable --now {UNIT}",
            f"rm {path}",
            "systemctl --user daemon-reload",
        ]
    else:
        expected = [f"launchctl bootout gui/{os.getuid()}/{LABEL}", f"rm {path}"]
    assert result.out.splitlines()[1:] == [f"  {line}" for line in expected]
    assert path.read_text() == "installed earlier\n"


def test_install_status_reinstall_uninstall_with_systemctl(sandbox: Sandbox) -> None:
    """With a fake systemctl: install writes and starts it, reinstall restarts, uninstall stops."""
    sandbox.fake_tools()
    preview = sandbox.semctl("service", "install", "--systemd", "--dry-run").out
    sandbox.calls()

    result = sandbox.semctl("service", "install", "--systemd")
    assert result.code == 0, result.err
    assert sandbox.unit.read_text() == preview
    assert stat.S_IMODE(sandbox.unit.stat().st_mode) == 0o644
    assert [c for c in sandbox.calls() if "is-active" not in c and "show-env" not in c] == [
        "systemctl --user daemon-reload",
        f"systemctl --user enable --now {UNIT}",
    ]
    assert f"{UNIT}: active" in result.out

    status = sandbox.semctl("service", "status", "--json", "--systemd").json()
    assert status["installed"] is True
    assert status["semanticad"] == SEMANTICAD
    assert status["this_installation"] is True
    assert status["state"] == "active"
    sandbox.calls()

    assert sandbox.semctl("service", "install", "--systemd").code == 0
    assert f"systemctl --user restart {UNIT}" in sandbox.calls()  # new code, new settings

    result = sandbox.semctl("service", "uninstall", "--systemd")
    assert result.code == 0, result.err
    assert [c for c in sandbox.calls() if "show-env" not in c] == [
        f"systemctl --user disable --now {UNIT}",
        "systemctl --user daemon-reload",
    ]
    assert not sandbox.unit.exists()


def test_install_status_reinstall_uninstall_with_launchctl(sandbox: Sandbox) -> None:
    """With a fake launchctl: install bootstraps, reinstall boots out first, uninstall boots out."""
    sandbox.fake_tools()
    domain = f"gui/{os.getuid()}"

    result = sandbox.semctl("service", "install", "--launchd")
    assert result.code == 0, result.err
    assert plistlib.loads(sandbox.plist.read_bytes())["ProgramArguments"] == [SEMANTICAD]
    assert stat.S_IMODE(sandbox.plist.stat().st_mode) == 0o644  # launchd refuses group-writable
    assert (sandbox.home / "Library" / "Logs" / "semantica").is_dir()
    assert f"launchctl bootstrap {domain} {sandbox.plist}" in sandbox.calls()
    status = sandbox.semctl("service", "status", "--json", "--launchd").json()
    assert (status["installed"], status["state"]) == (True, "running")

    assert sandbox.semctl("service", "install", "--launchd").code == 0
    changes = [c for c in sandbox.calls() if " print " not in f" {c} "]
    assert changes == [
        f"launchctl bootout {domain}/{LABEL}",
        f"launchctl bootstrap {domain} {sandbox.plist}",
    ]

    assert sandbox.semctl("service", "uninstall", "--launchd").code == 0
    assert f"launchctl bootout {domain}/{LABEL}" in sandbox.calls()
    assert not sandbox.plist.exists()


def test_a_failing_step_names_the_command_and_exits_1(sandbox: Sandbox) -> None:
    """When systemctl enable fails, semctl names the command and the unit's path, and exits 1."""
    sandbox.fake_tools()
    sandbox.env["FAKE_FAIL"] = "enable"
    result = sandbox.semctl("service", "install", "--systemd")
    assert result.code == 1
    line = _one_line(result)
    assert f"systemctl --user enable --now {UNIT} failed: Job for {UNIT} failed." in line
    assert str(sandbox.unit) in line


@pytest.mark.slow
def test_an_installed_wheel_renders_its_own_semanticad(sandbox: Sandbox, tmp_path: Path) -> None:
    """A plain wheel install finds its templates in the package and names its own semanticad."""
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
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "dist").glob("semantica-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run(
        [*pip, "install", "--no-deps", "--disable-pip-version-check", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    # The dependencies come from this venv; semantica itself from the new one.
    site = next(Path(p) for p in sys.path if p.endswith("site-packages"))
    sandbox.env["PYTHONPATH"] = str(site)
    for platform, marker in (("--systemd", "ExecStart="), ("--launchd", "<string>")):
        run = subprocess.run(
            [str(venv / "bin" / "semctl"), "service", "install", "--dry-run", platform],
            env=sandbox.env,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
        assert f"{marker}{venv / 'bin' / 'semanticad'}" in run.stdout
