"""Bad input on the command line and in config files: exit 2 (usage, bad input) or 78 (config),
one message naming the problem, no traceback, nothing on stdout, and no broker needed to say so.

The transport URL points at a port nobody listens on: had a command got as far as connecting,
it would exit 69 instead, so each case also proves the input is checked first.
"""

from __future__ import annotations

import pytest
from faults_support import clean_env, managerctl
from rigs.rabbitmq import free_port

SECRET = "Sekr3t-in-config"


@pytest.fixture(scope="module")
def env():
    return clean_env(MANAGERCTL_TRANSPORT_URL=f"rabbit://guest:guest@127.0.0.1:{free_port()}/")


def call(*arguments: str) -> tuple[str, ...]:
    return ("call", "web01", "echo", *arguments, "--topic", "hostinfo")


CASES = {
    "no equals sign": (call("novalue"), 2, "argument 'novalue' is not key=value"),
    "bad name": (call("1x=2"), 2, "argument name '1x' is not a valid name"),
    "empty name": (call("=2"), 2, "argument name '' is not a valid name"),
    "name twice": (call("a=1", "a=2"), 2, "argument 'a' given twice"),
    "truncated json": (call("--args-json", '{"a":'), 2, "--args-json is not valid JSON"),
    "json not an object": (call("--args-json", "[1, 2]"), 2, "must be a JSON object, not a list"),
    "json bad name": (call("--args-json", '{"a b": 1}'), 2, "argument name 'a b' in --args-json"),
    "json nested too deep": (call("--args-json", "[" * 100_000), 2, "nested too deeply"),
    "json and key=value": (
        call("a=1", "--args-json", '{"a": 2}'),
        2,
        "argument 'a' given both in --args-json and as key=value",
    ),
    "value nested too deep is a string": (
        ("--transport-url", "http://x", *call("a=" + "[" * 100_000)),
        2,
        "unsupported transport URL scheme 'http'",
    ),
    "url bad port": (
        ("--transport-url", f"rabbit://guest:{SECRET}@h:notaport/", *call()),
        2,
        "host #1 of the transport URL has a bad port",
    ),
    "url port out of range": (
        ("--transport-url", "rabbit://h:70000/", *call()),
        2,
        "has a bad port",
    ),
    "url http": (
        ("--transport-url", "http://x", *call()),
        2,
        "unsupported transport URL scheme 'http'",
    ),
    "url without scheme": (
        ("--transport-url", "localhost:5672", *call()),
        2,
        "the transport URL has no scheme",
    ),
    "url unknown option": (
        ("--transport-url", "rabbit://h/?no_such_option=1", *call()),
        2,
        "unknown transport URL option 'no_such_option'",
    ),
    "url bad option value": (
        ("--transport-url", "rabbit://h/?heartbeat_timeout_threshold=soon", *call()),
        2,
        "heartbeat_timeout_threshold expects an integer",
    ),
    "timeout not a number": (("ping", "web01", "--topic", "t", "--timeout", "soon"), 2, "soon"),
    "ping without a target": (("ping", "--topic", "t"), 2, "give a HOST, --hosts-file or --all"),
    "probe timeout zero": (("probe", "web01", "--topic", "t", "--timeout", "0"), 2, "--timeout"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_exit_2_with_one_message(case, env):
    arguments, code, message = CASES[case]
    run = managerctl(*arguments, env=env)
    assert run.returncode == code, run
    assert run.stdout == "", run
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run
    errors = [line for line in run.error_lines if line.startswith("managerctl: error: ")]
    assert len(errors) == 1 and message in errors[0], run
    assert SECRET not in run.stderr


CONFIGS = {
    "syntax error": ("[DEFAULT\nhost = web01\n", "invalid configuration"),
    "no section": ("host = web01\n", "invalid configuration"),
    "bad int": ("[DEFAULT]\nrpc_response_timeout = soon\n", "rpc_response_timeout"),
    "bad bool": ("[DEFAULT]\nperiodic_enable = perhaps\n", "periodic_enable"),
    "bad float": ("[DEFAULT]\nconnect_timeout = fast\n", "connect_timeout"),
    "bad rabbit option": (
        "[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = often\n",
        "heartbeat_timeout_threshold",
    ),
}


@pytest.mark.parametrize("command", [("config", "show"), call()], ids=["config show", "call"])
@pytest.mark.parametrize("case", list(CONFIGS))
def test_a_broken_config_file_is_exit_78_naming_the_problem(case, command, env, tmp_path):
    text, names = CONFIGS[case]
    config = tmp_path / "broken.conf"
    config.write_text(f"[DEFAULT]\ntransport_url = rabbit://guest:{SECRET}@h/\n" + text)
    if case in ("syntax error", "no section"):
        config.write_text(text)
    run = managerctl("--config-file", str(config), *command, env=env)
    assert run.returncode == 78, run
    assert run.stdout == "", run
    assert len(run.error_lines) == 1 and run.error_lines[0].startswith("managerctl: error: ")
    assert names in run.stderr and "Traceback" not in run.stderr, run
    assert SECRET not in run.stderr


@pytest.mark.parametrize(
    "where", ["--config-file", "MANAGERCTL_CONFIG_FILE", "--config-dir"], ids=str
)
def test_a_missing_config_file_is_exit_78_naming_it(where, env, tmp_path):
    missing = tmp_path / "nowhere" / "managerctl.conf"
    if where == "--config-file":
        run = managerctl("--config-file", str(missing), *call(), env=env)
    elif where == "--config-dir":
        run = managerctl("--config-dir", str(missing.parent), *call(), env=env)
    else:
        run = managerctl(*call(), env={**env, where: str(missing)})
    assert run.returncode == 78, run
    named = str(missing.parent) if where == "--config-dir" else str(missing)
    assert len(run.error_lines) == 1 and named in run.error_lines[0], run
    assert "Traceback" not in run.stderr


def test_a_bad_environment_value_is_exit_78_naming_the_variable_value(env):
    run = managerctl(*call(), env={**env, "MANAGERCTL_CONNECT_TIMEOUT": "fast"})
    assert run.returncode == 78, run
    assert len(run.error_lines) == 1 and "connect_timeout" in run.stderr, run
