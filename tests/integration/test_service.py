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
WEB_UNIT = "semantica-web.service"
WEB_LABEL = "dev.semantica.web"
SETTINGS = {
    "SEMANTICA_WORKERS": "3",
    "SEMANTICA_HANDLERS": "my_handlers,100%_handlers",  # a % must reach systemd as %%
    "SEMANTICA_DRAIN_TIMEOUT": "100",  # raises the stop timeout to 100 + 5 + 10
}

# A stand-in for systemctl and launchctl: logs each call, keeps each service's
# state in a file (the web view's apart from the supervisor's), answers like the
# real one. FAKE_FAIL=word fails the call whose arguments contain that word.
FAKE_TOOL = """\
import os, sys
from pathlib import Path

name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join([name, *args]) + "\\n")
web = any(a.rsplit("/", 1)[-1].startswith(("semantica-web", "dev.semantica.web")) for a in args)
state = Path(os.environ["FAKE_STATE"] + (".web" if web else ""))
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

    @property
    def web_unit(self) -> Path:
        return self.unit.with_name(WEB_UNIT)

    @property
    def web_plist(self) -> Path:
        return self.plist.with_name(f"{WEB_LABEL}.plist")

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


@pytest.mark.parametrize(("unit", "web"), [(UNIT, []), (WEB_UNIT, ["--web"])])
def test_dry_run_unit_passes_systemd_analyze_verify(
    sandbox: Sandbox, tmp_path: Path, unit: str, web: list[str]
) -> None:
    """systemd-analyze verify --user accepts the rendered unit (and the web view's),
    without a warning."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = sandbox.semctl("service", "install", "--dry-run", "--systemd", *web)
    assert result.code == 0, result.err
    copy = tmp_path / "verify" / unit
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
        for web, program in (([], "semanticad"), (["--web"], "semctl")):
            run = subprocess.run(
                [str(venv / "bin" / "semctl"), "service", "install", "--dry-run", platform, *web],
                env=sandbox.env,
                capture_output=True,
                text=True,
            )
            assert run.returncode == 0, run.stderr
            assert f"{marker}{venv / 'bin' / program}" in run.stdout


# -- the web view's service (--web) ----------------------------------------------

SEMCTL_WEB = [SEMCTL, "web", "--addr", "127.0.0.1:7433"]


def test_web_dry_run_prints_a_unit_that_runs_semctl_web(sandbox: Sandbox) -> None:
    """--web --dry-run prints semantica-web.service: this venv's `semctl web --addr`, the
    same settings, ordered after the supervisor without needing it; writes nothing."""
    result = sandbox.semctl("service", "install", "--web", "--dry-run", "--systemd")
    assert result.code == 0, result.err
    assert re.search(
        rf"^ExecStart={re.escape(SEMCTL)} web --addr 127\.0\.0\.1:7433$", result.out, re.M
    )
    for name, value in SETTINGS.items():
        assert f"\nEnvironment={name}={value.replace('%', '%%')}\n" in result.out
    for directive in ("After=semantica.service", "Type=exec", "Restart=on-failure"):
        assert f"\n{directive}\n" in result.out
    assert "\nTimeoutStopSec=10\n" in result.out  # the supervisor's drain is not its business
    directives = re.sub(r"^#.*$", "", result.out, flags=re.M)
    for absent in ("Type=notify", "Wants=", "Requires=", "BindsTo=", "@"):
        assert absent not in directives
    assert str(sandbox.web_unit) in result.err
    assert f"  systemctl --user enable --now {WEB_UNIT}\n" in result.err
    assert sandbox.files() == []


def test_web_launchd_dry_run_prints_an_agent_of_its_own(sandbox: Sandbox) -> None:
    """--web --launchd --dry-run prints dev.semantica.web: semctl web, the settings, its log."""
    result = sandbox.semctl(
        "service", "install", "--web", "--launchd", "--dry-run", "--addr", "[::1]:8080"
    )
    assert result.code == 0, result.err
    agent = plistlib.loads(result.out.encode())
    assert agent["Label"] == WEB_LABEL
    assert agent["ProgramArguments"] == [SEMCTL, "web", "--addr", "[::1]:8080"]
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["ExitTimeOut"] == 10
    assert agent["EnvironmentVariables"] == SETTINGS
    log = str(sandbox.home / "Library" / "Logs" / "semantica" / "web.log")
    assert agent["StandardOutPath"] == agent["StandardErrorPath"] == log
    assert f"  launchctl bootstrap gui/{os.getuid()} {sandbox.web_plist}\n" in result.err
    assert "WARNING" not in result.err
    assert sandbox.files() == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--web", "--addr", "7433"], "--addr must be HOST:PORT"),
        (["--web", "--addr", "example.com:7433"], "the host must be an IP address"),
        (["--web", "--addr", "127.0.0.1:70000"], "the port must be 0-65535"),
        (["--web", "--addr", "127.0.0.1:0"], "a service needs a fixed port"),
        (["--addr", "127.0.0.1:7433"], "--addr goes with --web"),
    ],
)
def test_a_bad_web_addr_is_refused_with_one_line(
    sandbox: Sandbox, args: list[str], says: str
) -> None:
    """An --addr semctl web would refuse (or port 0, or --addr without --web): exit 2, one
    line, nothing written, dry run or not."""
    sandbox.fake_tools()
    for dry_run in (["--dry-run"], []):
        result = sandbox.semctl("service", "install", "--systemd", *args, *dry_run)
        assert result.code == 2
        assert says in _one_line(result)
        assert result.out == ""
    assert sandbox.calls() == []
    assert [p for p in sandbox.files() if p.parent.name != "bin"] == []  # the fakes only


def test_a_web_service_beyond_loopback_is_installed_with_a_warning(sandbox: Sandbox) -> None:
    """A non-loopback --addr is taken (the user asked) with a loud warning on stderr."""
    result = sandbox.semctl(
        "service", "install", "--web", "--systemd", "--dry-run", "--addr", "0.0.0.0:7433"
    )
    assert result.code == 0, result.err
    assert re.search(r"^ExecStart=.* web --addr 0\.0\.0\.0:7433$", result.out, re.M)
    warning = [line for line in result.err.splitlines() if "WARNING" in line]
    assert len(warning) >= 3
    assert "0.0.0.0:7433" in warning[0]
    assert "plain HTTP" in result.err


def test_web_install_status_reinstall_uninstall_with_systemctl(sandbox: Sandbox) -> None:
    """With a fake systemctl: install --web writes and starts semantica-web.service and says
    how to log in; status --web reports it; reinstall restarts it; uninstall --web stops it;
    the supervisor's unit is another matter."""
    sandbox.fake_tools()
    preview = sandbox.semctl("service", "install", "--web", "--systemd", "--dry-run").out
    sandbox.calls()

    result = sandbox.semctl("service", "install", "--web", "--systemd")
    assert result.code == 0, result.err
    assert sandbox.web_unit.read_text() == preview
    assert stat.S_IMODE(sandbox.web_unit.stat().st_mode) == 0o644
    assert not sandbox.unit.exists()
    assert [c for c in sandbox.calls() if "is-active" not in c and "show-env" not in c] == [
        "systemctl --user daemon-reload",
        f"systemctl --user enable --now {WEB_UNIT}",
    ]
    assert f"{WEB_UNIT}: active" in result.out
    # How to log in: the URL in its log, or the token pasted into the login page.
    token = sandbox.home / ".local" / "state" / "semantica" / "token"
    assert "journalctl --user -u semantica-web -o cat | grep 'web view:'" in result.out
    assert f"systemctl --user restart {WEB_UNIT}" in result.out
    assert f"open http://127.0.0.1:7433/login and paste the token in {token}" in result.out
    assert "the supervisor's service is not installed" in result.out

    status = sandbox.semctl("service", "status", "--web", "--json", "--systemd").json()
    assert status == {
        "platform": "systemd",
        "file": str(sandbox.web_unit),
        "installed": True,
        "semctl": SEMCTL,
        "addr": "127.0.0.1:7433",
        "this_installation": True,
        "state": "active",
        "error": None,
    }
    text = sandbox.semctl("service", "status", "--web", "--systemd").out
    assert f"installed, runs {' '.join(SEMCTL_WEB)}\n" in text
    assert "log in at http://127.0.0.1:7433/login" in text
    supervisor = sandbox.semctl("service", "status", "--json", "--systemd").json()
    assert (supervisor["installed"], supervisor["state"]) == (False, "inactive")
    sandbox.calls()

    assert sandbox.semctl("service", "install", "--web", "--systemd").code == 0
    assert f"systemctl --user restart {WEB_UNIT}" in sandbox.calls()

    # The supervisor's service beside it; removing it leaves the web view's.
    assert sandbox.semctl("service", "install", "--systemd").code == 0
    result = sandbox.semctl("service", "uninstall", "--systemd")
    assert result.code == 0, result.err
    assert "semctl service uninstall --web" in result.out
    assert sandbox.web_unit.exists()
    sandbox.calls()

    result = sandbox.semctl("service", "uninstall", "--web", "--systemd", "--dry-run")
    assert result.out.splitlines()[1:] == [
        f"  systemctl --user disable --now {WEB_UNIT}",
        f"  rm {sandbox.web_unit}",
        "  systemctl --user daemon-reload",
    ]
    result = sandbox.semctl("service", "uninstall", "--web", "--systemd")
    assert result.code == 0, result.err
    assert [c for c in sandbox.calls() if "show-env" not in c] == [
        f"systemctl --user disable --now {WEB_UNIT}",
        "systemctl --user daemon-reload",
    ]
    assert not sandbox.web_unit.exists()
    assert not sandbox.unit.exists()


def test_web_install_status_uninstall_with_launchctl(sandbox: Sandbox) -> None:
    """With a fake launchctl: install --web bootstraps dev.semantica.web and points at its
    log for the login URL; status --web asks about it; uninstall --web boots it out."""
    sandbox.fake_tools()
    domain = f"gui/{os.getuid()}"

    result = sandbox.semctl("service", "install", "--web", "--launchd", "--addr", "127.0.0.1:9999")
    assert result.code == 0, result.err
    agent = plistlib.loads(sandbox.web_plist.read_bytes())
    assert agent["ProgramArguments"] == [SEMCTL, "web", "--addr", "127.0.0.1:9999"]
    assert f"launchctl bootstrap {domain} {sandbox.web_plist}" in sandbox.calls()
    log = sandbox.home / "Library" / "Logs" / "semantica" / "web.log"
    assert log.parent.is_dir()
    assert f"grep 'web view:' {log} | tail -n 1" in result.out
    assert f"launchctl kickstart -k {domain}/{WEB_LABEL}" in result.out
    assert "http://127.0.0.1:9999/login" in result.out

    status = sandbox.semctl("service", "status", "--web", "--json", "--launchd").json()
    assert (status["installed"], status["state"], status["addr"]) == (
        True,
        "running",
        "127.0.0.1:9999",
    )
    assert f"launchctl print {domain}/{WEB_LABEL}" in sandbox.calls()

    assert sandbox.semctl("service", "uninstall", "--web", "--launchd").code == 0
    assert f"launchctl bootout {domain}/{WEB_LABEL}" in sandbox.calls()
    assert not sandbox.web_plist.exists()
