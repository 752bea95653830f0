"""Settings: where the state lives, and the supervisor's settings from env and flags."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from semantica.config import TOKEN_FILE_MAX, Settings, locate, read_token_file
from semantica.errors import ConfigError

# ---------------------------------------------------------------- locate


def test_home_argument_wins(tmp_path: Path) -> None:
    """An explicit --home beats SEMANTICA_HOME and XDG_STATE_HOME."""
    env = {"SEMANTICA_HOME": str(tmp_path / "env"), "XDG_STATE_HOME": str(tmp_path / "xdg")}
    paths = locate(env, home=tmp_path / "arg")
    assert paths.home == tmp_path / "arg"
    assert paths.socket == tmp_path / "arg" / "semantica.sock"


def test_semantica_home_beats_xdg(tmp_path: Path) -> None:
    """SEMANTICA_HOME beats XDG_STATE_HOME."""
    env = {"SEMANTICA_HOME": str(tmp_path / "env"), "XDG_STATE_HOME": str(tmp_path / "xdg")}
    assert locate(env).home == tmp_path / "env"


def test_xdg_state_home(tmp_path: Path) -> None:
    """Without SEMANTICA_HOME the state lives in $XDG_STATE_HOME/semantica."""
    assert locate({"XDG_STATE_HOME": str(tmp_path / "xdg")}).home == tmp_path / "xdg" / "semantica"


def test_fallback_is_local_state() -> None:
    """With neither variable set the state lives in ~/.local/state/semantica."""
    paths = locate({})
    assert paths.home == Path.home() / ".local" / "state" / "semantica"
    assert paths.socket == paths.home / "semantica.sock"


def test_empty_variables_count_as_unset(tmp_path: Path) -> None:
    """An empty SEMANTICA_HOME or SEMANTICA_SOCKET is ignored, not taken as the cwd."""
    env = {"SEMANTICA_HOME": "", "SEMANTICA_SOCKET": "", "XDG_STATE_HOME": str(tmp_path)}
    paths = locate(env)
    assert paths.home == tmp_path / "semantica"
    assert paths.socket == tmp_path / "semantica" / "semantica.sock"


def test_default_socket_is_in_home(tmp_path: Path) -> None:
    """Without SEMANTICA_SOCKET the socket is $SEMANTICA_HOME/semantica.sock."""
    paths = locate({"SEMANTICA_HOME": str(tmp_path)})
    assert paths.socket == tmp_path / "semantica.sock"
    assert paths.token == tmp_path / "token"
    assert paths.db == tmp_path / "semantica.db"
    assert paths.logs == tmp_path / "logs"


def test_semantica_socket_overrides(tmp_path: Path) -> None:
    """SEMANTICA_SOCKET moves the socket without moving the state directory."""
    env = {"SEMANTICA_HOME": str(tmp_path / "h"), "SEMANTICA_SOCKET": str(tmp_path / "s.sock")}
    paths = locate(env)
    assert paths.home == tmp_path / "h"
    assert paths.socket == tmp_path / "s.sock"


def test_socket_argument_beats_env(tmp_path: Path) -> None:
    """An explicit --socket beats SEMANTICA_SOCKET."""
    env = {"SEMANTICA_HOME": str(tmp_path), "SEMANTICA_SOCKET": str(tmp_path / "env.sock")}
    assert locate(env, socket=tmp_path / "arg.sock").socket == tmp_path / "arg.sock"


def test_paths_are_absolute_and_expanded() -> None:
    """Relative and ~ paths are resolved, so the daemon and clients agree whatever their cwd."""
    paths = locate({"SEMANTICA_HOME": "rel/dir", "SEMANTICA_SOCKET": "~/x.sock"})
    assert paths.home == Path(os.getcwd()) / "rel" / "dir"
    assert paths.socket == Path.home() / "x.sock"


# ---------------------------------------------------------------- Settings


def test_settings_defaults(tmp_path: Path) -> None:
    """With nothing set, the documented defaults apply."""
    s = Settings.from_env({"SEMANTICA_HOME": str(tmp_path)})
    assert s.workers == (os.cpu_count() or 1)
    assert s.handlers == ()
    assert s.drain_timeout == 30.0
    assert s.log_format is None
    assert s.durability == "full"
    assert s.power == "auto"
    assert s.retention_days == 30.0
    assert s.paths.home == tmp_path


def test_settings_from_env(tmp_path: Path) -> None:
    """Each SEMANTICA_* variable sets its setting."""
    env = {
        "SEMANTICA_HOME": str(tmp_path),
        "SEMANTICA_WORKERS": "3",
        "SEMANTICA_HANDLERS": " pkg.a, ,pkg.b ,, ",
        "SEMANTICA_DRAIN_TIMEOUT": "2.5",
        "SEMANTICA_LOG_FORMAT": "JSON",
        "SEMANTICA_DURABILITY": "normal",
    }
    s = Settings.from_env(env)
    assert s.workers == 3
    assert s.handlers == ("pkg.a", "pkg.b")
    assert s.drain_timeout == 2.5
    assert s.log_format == "json"
    assert s.durability == "normal"


def test_flags_override_env(tmp_path: Path) -> None:
    """A command-line flag beats the environment variable of the same name."""
    env = {
        "SEMANTICA_HOME": str(tmp_path / "env"),
        "SEMANTICA_WORKERS": "3",
        "SEMANTICA_HANDLERS": "pkg.a",
        "SEMANTICA_DRAIN_TIMEOUT": "2.5",
        "SEMANTICA_LOG_FORMAT": "json",
        "SEMANTICA_DURABILITY": "normal",
    }
    s = Settings.from_env(
        env,
        home=str(tmp_path / "flag"),
        workers=5,
        handlers="pkg.x,pkg.y",
        drain_timeout=0,
        log_format="pretty",
        durability="full",
    )
    assert s.paths.home == tmp_path / "flag"
    assert s.workers == 5
    assert s.handlers == ("pkg.x", "pkg.y")
    assert s.drain_timeout == 0.0
    assert s.log_format == "pretty"
    assert s.durability == "full"


def test_unset_flags_fall_back_to_env(tmp_path: Path) -> None:
    """A flag given as None leaves the environment's value in force."""
    env = {"SEMANTICA_HOME": str(tmp_path), "SEMANTICA_WORKERS": "4"}
    assert Settings.from_env(env, workers=None, log_format=None).workers == 4


def test_handlers_flag_as_list(tmp_path: Path) -> None:
    """Handler modules may be given as a list of names."""
    s = Settings.from_env({"SEMANTICA_HOME": str(tmp_path)}, handlers=["m1", "m2"])
    assert s.handlers == ("m1", "m2")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SEMANTICA_WORKERS", "abc"),
        ("SEMANTICA_WORKERS", "0"),
        ("SEMANTICA_WORKERS", "-2"),
        ("SEMANTICA_WORKERS", "1.5"),
        ("SEMANTICA_WORKERS", "100000"),
        ("SEMANTICA_DRAIN_TIMEOUT", "-1"),
        ("SEMANTICA_DRAIN_TIMEOUT", "soon"),
        ("SEMANTICA_DRAIN_TIMEOUT", "nan"),
        ("SEMANTICA_LOG_FORMAT", "xml"),
        ("SEMANTICA_DURABILITY", "fast"),
        ("SEMANTICA_POWER", "solar"),
        ("SEMANTICA_RETENTION_DAYS", "-3"),
        ("SEMANTICA_STORE", "/var/lib/jobs.db"),
        ("SEMANTICA_STORE", "mysql://db/jobs"),
        ("SEMANTICA_NODE_TIMEOUT", "0.5"),
        ("SEMANTICA_NODE_TIMEOUT", "never"),
        ("SEMANTICA_METRICS_ADDR", "127.0.0.1:\u00b2"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, variable: str, value: str) -> None:
    """A malformed setting raises ConfigError whose message names the variable and value."""
    env = {"SEMANTICA_HOME": str(tmp_path), variable: value}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert variable in info.value.message
    assert value in info.value.message


def test_bad_flag_is_refused(tmp_path: Path) -> None:
    """A bad value given as a flag is refused like one from the environment."""
    with pytest.raises(ConfigError, match="--workers"):
        Settings.from_env({"SEMANTICA_HOME": str(tmp_path)}, workers=0)


# ---------------------------------------------------------------- the token file


@pytest.mark.parametrize(
    ("content", "token"),
    [
        (b"abc-DEF_123\n", "abc-DEF_123"),
        (b"  tok en \r\n", "tok en"),
        ("\u00e9t\u00e9\n".encode(), "\u00e9t\u00e9"),
    ],
)
def test_a_token_file_is_one_line_of_text(tmp_path: Path, content: bytes, token: str) -> None:
    """The token is the file's one line, without the white space around it."""
    (tmp_path / "token").write_bytes(content)
    assert read_token_file(tmp_path / "token") == token


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\xfftoken\n", "not text"),
        (b"a\nb\n", "more than one line"),
        (b"a\x07b", "control characters"),
        (b" \n", "empty"),
        (b"x" * (TOKEN_FILE_MAX + 1), "larger than"),
    ],
)
def test_a_token_file_that_holds_no_token_is_a_config_error(
    tmp_path: Path, content: bytes, why: str
) -> None:
    """Garbage in the token file: ConfigError (exit 2) naming the file, the reason, the fix."""
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        read_token_file(path)
    assert why in error.value.message and str(path) in error.value.message
    assert "delete it" in error.value.message and error.value.exit_code == 2


def test_a_missing_token_file_is_left_to_the_caller(tmp_path: Path) -> None:
    """Each side says what a missing file means (the supervisor makes one; a client is
    pointed at the wrong place)."""
    with pytest.raises(FileNotFoundError):
        read_token_file(tmp_path / "token")


def test_a_bad_value_is_named_as_it_was_given() -> None:
    """The error names the flag when a flag gave the value, the variable when the
    environment did: `semanticad --workers 0` says --workers."""
    with pytest.raises(ConfigError, match=r"^--workers must be at least 1, got '0'$"):
        Settings.from_env({}, workers="0")
    with pytest.raises(ConfigError, match=r"^SEMANTICA_WORKERS must be at least 1"):
        Settings.from_env({"SEMANTICA_WORKERS": "0"})
    with pytest.raises(ConfigError, match=r"^--drain-timeout must be a number"):
        Settings.from_env({}, drain_timeout="soon")


@pytest.mark.parametrize(
    "store",
    [
        "postgresql://jobs@db.example/semantica",
        "postgres://db/semantica?sslmode=require",
        "host=db.example dbname=semantica",
        "dbname=semantica",
    ],
)
def test_a_store_is_a_postgresql_connection_string(tmp_path: Path, store: str) -> None:
    """SEMANTICA_STORE takes libpq's URLs and key=value words; unset is the SQLite file."""
    settings = Settings.from_env({"SEMANTICA_HOME": str(tmp_path), "SEMANTICA_STORE": store})
    assert settings.store == store
    assert settings.store_location == store
    default = Settings.from_env({"SEMANTICA_HOME": str(tmp_path)})
    assert default.store is None
    assert default.store_location == tmp_path / "semantica.db"


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("postgresql://jobs:s3cret@db/semantica", "postgresql://jobs:***@db/semantica"),
        (
            "postgresql://jobs@db/semantica?password=s3cret&x=1",
            "postgresql://jobs@db/semantica?password=***&x=1",
        ),
        ("host=db password=s3cret dbname=semantica", "host=db password=*** dbname=semantica"),
        ("host=db password='s3 cret' dbname=semantica", "host=db password=*** dbname=semantica"),
    ],
)
def test_a_password_is_never_shown(tmp_path: Path, given: str, shown: str) -> None:
    """status and the logs show the store without its password; so does a refusal."""
    settings = Settings.from_env({"SEMANTICA_HOME": str(tmp_path), "SEMANTICA_STORE": given})
    assert settings.store_shown == shown
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SEMANTICA_HOME": str(tmp_path), "SEMANTICA_STORE": "/" + given})
    assert "s3" not in info.value.message


def test_a_node_name_is_one_printable_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SEMANTICA_NODE_NAME"):
        Settings.from_env({"SEMANTICA_HOME": str(tmp_path), "SEMANTICA_NODE_NAME": "a\nb"})


def test_node_settings_default_to_the_host_name(tmp_path: Path) -> None:
    settings = Settings.from_env({"SEMANTICA_HOME": str(tmp_path)})
    assert settings.node_name == socket.gethostname()
    assert settings.node_timeout == 10.0
    named = Settings.from_env({"SEMANTICA_HOME": str(tmp_path)}, node_name="n2", node_timeout="3")
    assert (named.node_name, named.node_timeout) == ("n2", 3.0)
