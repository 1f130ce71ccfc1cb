"""The operator's contract, checked over the whole command tree through the installed script.

- every command (found by walking the click tree as --help does) answers --help with exit 0;
- every command that prints data is exercised with -f json (it parses) and piped (no ANSI);
- every exit code of the DESIGN.md table is produced by some invocation here;
- a transport URL password never appears in any output, error or --debug traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import click
import pytest
from rigs.cli import clean_env

from manager_cli.cli.main import cli

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
SECRET = "Zq7-contract-secret"
HOST = "contract-h1"


def command_paths() -> list[tuple[str, ...]]:
    """Every command and subcommand, walking list_commands/get_command (lazy ones included)."""
    paths: list[tuple[str, ...]] = []

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, f"{' '.join(prefix + (name,))} does not load"
            paths.append(prefix + (name,))
            if isinstance(command, click.Group):
                walk(command, prefix + (name,))

    walk(cli, ())
    return paths


def has_format_option(path: tuple[str, ...]) -> bool:
    group: click.Command = cli
    for name in path:
        assert isinstance(group, click.Group)
        group = group.get_command(click.Context(group), name)
    return any("--format" in getattr(param, "opts", []) for param in group.params)


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [MANAGERCTL, *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=timeout,
        check=False,
    )


# Invocations of every data-printing command that need no broker.
LOCAL_VIEWS: list[tuple[str, ...]] = [
    ("managers", "list"),
    ("managers", "show", "hostinfo"),
    ("hooks", "run", "hostinfo"),
    ("periodic", "list", "hostinfo"),
    ("run-periodic", "hostinfo"),
    ("capabilities", "gather", "hostinfo"),
    ("config", "show"),
]


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_every_command_answers_help(path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: managerctl" in result.stdout
    assert result.stderr == ""


def test_root_help_lists_every_exit_code() -> None:
    result = run("--help")
    for code in ("0", "1", "2", "3", "69", "75", "77", "78", "130"):
        assert f"  {code} " in result.stdout, code


@pytest.mark.parametrize("args", LOCAL_VIEWS, ids=" ".join)
def test_local_views_json_parses_and_piped_output_is_plain(args: tuple[str, ...]) -> None:
    result = run(*args, "-f", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data, "an empty view proves nothing"
    records = data if isinstance(data, list) else [data]
    for record in records:
        assert all(key == key.lower() and " " not in key for key in record)
    table = run(*args)
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout + table.stderr


def test_every_command_with_a_format_option_is_exercised() -> None:
    """A new data-printing command must be added to a contract test, here or with a broker."""
    broker_views = {
        ("ping",),
        ("probe",),
        ("services", "list"),
        # the store views: tests/unit/test_capabilities.py runs them over a real store
        ("services", "delete"),
        ("services", "prune"),
        ("capabilities", "show"),
        ("capabilities", "history"),
        ("capabilities", "publish"),
        ("call",),
        ("tap",),
    }
    known = set(command_paths())
    covered = {
        max((args[:n] for n in range(1, len(args) + 1) if args[:n] in known), key=len)
        for args in LOCAL_VIEWS
    }
    for path in command_paths():
        if has_format_option(path):
            assert path in covered or path in broker_views, f"{' '.join(path)} is not exercised"


# ---------------------------------------------------------------------------
# With a real broker: the exit codes and secrets that need one.


@pytest.fixture(scope="module")
def served(rabbitmq) -> Iterator[dict[str, str]]:
    """`managerctl serve hostinfo` on the test broker; yields the env that reaches it."""
    env = clean_env(MANAGERCTL_TRANSPORT_URL=rabbitmq.url)
    service = subprocess.Popen(
        [MANAGERCTL, "serve", "hostinfo", "--host", HOST],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if run("ping", HOST, "--topic", "hostinfo", "--timeout", "2", env=env).returncode == 0:
                break
            time.sleep(0.3)
        else:
            pytest.fail("the hostinfo service did not come up")
        yield env
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


def secret_url(rabbitmq, password: str = SECRET) -> str:
    return f"rabbit://guest:{password}@127.0.0.1:{rabbitmq.port}/"


def test_exit_0_and_json_of_broker_views(served) -> None:
    ping = run("ping", HOST, "--topic", "hostinfo", "-f", "json", env=served)
    assert ping.returncode == 0, ping.stderr
    assert json.loads(ping.stdout)[0]["host"] == HOST
    everyone = run(
        "ping", "--all", "--topic", "hostinfo", "--expect", "1", "-f", "json", env=served
    )
    assert everyone.returncode == 0, everyone.stderr
    assert [row["host"] for row in json.loads(everyone.stdout)] == [HOST]
    call = run("call", HOST, "echo", "value=[1,2]", "--topic", "hostinfo", env=served)
    assert call.returncode == 0, call.stderr
    assert json.loads(call.stdout) == [1, 2]
    assert "\x1b" not in ping.stdout + everyone.stdout + call.stdout
    tap = subprocess.Popen(
        [MANAGERCTL, "tap", "--topic", "hostinfo", "-f", "json", "--count", "1"],
        env=served,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while tap.poll() is None and time.monotonic() < deadline:
        run("call", HOST, "echo", "--topic", "hostinfo", "--cast", env=served)
        time.sleep(0.5)
    out, err = tap.communicate(timeout=20)
    assert tap.returncode == 0, err
    assert json.loads(out)["method"] == "echo"
    assert "\x1b" not in out + err


def test_exit_1_remote_error(served) -> None:
    result = run("call", HOST, "fail", "message=boom", "--topic", "hostinfo", env=served)
    assert result.returncode == 1
    assert "ValueError" in result.stderr and "boom" in result.stderr
    assert "Traceback" not in result.stderr


def test_exit_1_no_such_method(served) -> None:
    result = run("call", HOST, "nosuch", "--topic", "hostinfo", env=served)
    assert result.returncode == 1
    assert "NoSuchMethod" in result.stderr


def test_exit_2_bad_arguments(served) -> None:
    for args in (
        ("call", HOST, "echo", "novalue", "--topic", "hostinfo"),
        ("call", HOST, "echo", "--args-json", "{not json", "--topic", "hostinfo"),
        ("call", HOST, "echo", "--args-json", "[1]", "--topic", "hostinfo"),
    ):
        result = run(*args, env=served)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.count("managerctl: error:") == 1


def test_exit_3_partial(served) -> None:
    result = run(
        "ping",
        "--all",
        "--topic",
        "hostinfo",
        "--expect-hosts",
        f"{HOST},ghost",
        "--timeout",
        "2",
        "-f",
        "json",
        env=served,
    )
    assert result.returncode == 3, result.stderr
    rows = {row["host"]: row["outcome"] for row in json.loads(result.stdout)}
    assert rows == {HOST: "ok", "ghost": "down"}
    assert "ghost" in result.stderr


def test_exit_69_nobody_consumes_at_once(served) -> None:
    started = time.monotonic()
    result = run("call", "no-such-host", "echo", "--topic", "hostinfo", env=served)
    assert result.returncode == 69
    assert "hostinfo.no-such-host" in result.stderr
    assert time.monotonic() - started < 5  # the whole process; the check itself is one round trip


def test_exit_69_broker_unreachable_without_password_leak(rabbitmq, free_port) -> None:
    url = f"rabbit://guest:{SECRET}@127.0.0.1:{free_port}/"
    for debug in ((), ("--debug",)):
        result = run(
            *debug,
            "call",
            HOST,
            "echo",
            "--topic",
            "hostinfo",
            env=clean_env(MANAGERCTL_TRANSPORT_URL=url),
        )
        assert result.returncode == 69
        assert SECRET not in result.stdout + result.stderr


def test_exit_75_timeout(served) -> None:
    result = run(
        "call", HOST, "sleep", "seconds=3", "--topic", "hostinfo", "--timeout", "1", env=served
    )
    assert result.returncode == 75
    assert "within 1" in result.stderr


def test_exit_77_bad_credentials_without_password_leak(rabbitmq) -> None:
    env = clean_env(MANAGERCTL_TRANSPORT_URL=secret_url(rabbitmq))
    for debug in ((), ("--debug",)):
        result = run(*debug, "ping", HOST, "--topic", "hostinfo", env=env)
        assert result.returncode == 77, result.stderr
        assert SECRET not in result.stdout + result.stderr


def test_exit_78_bad_config_file(tmp_path) -> None:
    config = tmp_path / "bad.conf"
    config.write_text(
        f"[DEFAULT]\ntransport_url = rabbit://guest:{SECRET}@h/\nrpc_response_timeout = soon\n"
    )
    result = run("--config-file", str(config), "config", "show")
    assert result.returncode == 78
    assert "rpc_response_timeout" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_exit_130_interrupted(served) -> None:
    process = subprocess.Popen(
        [MANAGERCTL, "call", HOST, "sleep", "seconds=5", "--topic", "hostinfo"],
        env=served,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 130
    assert "Traceback" not in err


def test_password_never_printed_by_any_command(rabbitmq, tmp_path) -> None:
    """Every command, with the secret in the environment, a config file and --transport-url."""
    config = tmp_path / "managerctl.conf"
    config.write_text(f"[DEFAULT]\ntransport_url = {secret_url(rabbitmq)}\n")
    invocations = [list(args) for args in LOCAL_VIEWS] + [
        ["ping", HOST, "--topic", "hostinfo", "--timeout", "2"],
        ["ping", "--all", "--topic", "hostinfo", "--timeout", "1"],
        ["call", HOST, "echo", "--topic", "hostinfo", "--timeout", "2"],
        ["call", HOST, "echo", "--topic", "hostinfo", "--cast"],
        ["tap", "--topic", "hostinfo", "--duration", "0.5"],
    ]
    for args in invocations:
        for prefix in (
            ["--debug"],
            ["--config-file", str(config)],
            ["--transport-url", secret_url(rabbitmq)],
        ):
            result = run(
                *prefix, *args, env=clean_env(MANAGERCTL_TRANSPORT_URL=secret_url(rabbitmq))
            )
            assert SECRET not in result.stdout + result.stderr, (prefix, args)


@pytest.fixture
def free_port() -> int:
    from rigs.rabbitmq import free_port as pick

    return pick()


# -- remote failures read as one line; --debug shows the remote traceback (issue 13) -------


def test_a_remote_failure_is_one_line_and_debug_adds_its_remote_traceback(served) -> None:
    plain = run("call", HOST, "fail", "message=volume gone", "--topic", "hostinfo", env=served)
    assert plain.returncode == 1
    assert plain.stderr.splitlines() == ["managerctl: error: remote error: ValueError: volume gone"]
    debug = run(
        "--debug", "call", HOST, "fail", "message=volume gone", "--topic", "hostinfo", env=served
    )
    assert debug.returncode == 1
    assert "remote traceback:" in debug.stderr
    remote = debug.stderr.split("remote traceback:", 1)[1]
    assert "raise ValueError(message)" in remote  # the service's own frame
    # pika's frame-by-frame log only with --debug --debug
    assert " pika." not in debug.stderr
    louder = run("--debug", "--debug", "call", HOST, "echo", "--topic", "hostinfo", env=served)
    assert louder.returncode == 0 and " pika." in louder.stderr
