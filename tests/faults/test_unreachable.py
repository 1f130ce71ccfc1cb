"""A broker that cannot be used: every broker-facing command says so at once, in one line.

Unreachable means exit 69 within the connect timeout (``connect_timeout``, 2 s by default,
``MANAGERCTL_CONNECT_TIMEOUT`` to change it), one line on stderr, no traceback, nothing on
stdout. Refused credentials mean exit 77, and the password appears nowhere, not even with
--debug. The ways a broker is unreachable: nothing listens on the port, something else listens
there (a wrong port), the host name does not resolve, or the network swallows everything (a
blackhole: the TCP connection opens, then nothing ever answers).

``services list`` is not broker-facing: it reads the collector's store, so a dead broker must
not matter to it.
"""

from __future__ import annotations

import pytest
from faults_support import Run, clean_env, managerctl
from proxy import FaultProxy, GarbageServer
from rigs.rabbitmq import free_port

# The default connect timeout, and what a Python process needs to start and import what a
# command uses, on a busy two-core machine (measured: 0.2-0.4 s; allowed: 1 s).
CONNECT_TIMEOUT = 2.0
START_UP = 1.0
SECRET = "Sekr3t-fault-pw"
TOPIC = "faults_nobody"
HOST = "faults-host"

COMMANDS: dict[str, tuple[str, ...]] = {
    "call": ("call", HOST, "echo", "value=1", "--topic", TOPIC),
    "ping": ("ping", HOST, "--topic", TOPIC),
    "ping --all": ("ping", "--all", "--topic", TOPIC),
    "probe": ("probe", HOST, "--topic", TOPIC),
    "run-periodic --host": ("run-periodic", "hostinfo", "--host", HOST, "--topic", TOPIC),
    "periodic list --host": ("periodic", "list", "hostinfo", "--host", HOST, "--topic", TOPIC),
    "capabilities show --live": ("capabilities", "show", "--live", "--topic", TOPIC),
    "capabilities publish": ("capabilities", "publish", "--topic", TOPIC),
}


def env_for(url: str, tmp_path, **extra: str) -> dict[str, str]:
    return clean_env(MANAGERCTL_TRANSPORT_URL=url, XDG_STATE_HOME=str(tmp_path / "state"), **extra)


def assert_unavailable(run: Run, bound: float, *, names: str) -> None:
    """Exit 69 within ``bound`` seconds, one error line naming ``names``, no traceback."""
    assert run.returncode == 69, run
    assert run.elapsed < bound, run
    assert run.stdout == "", run
    assert len(run.error_lines) == 1, run
    assert run.error_lines[0].startswith("managerctl: error: "), run
    assert names in run.error_lines[0], run
    assert "Traceback" not in run.stderr, run


@pytest.fixture(scope="module")
def garbage_port():
    with GarbageServer() as server:
        yield server.port


@pytest.fixture(scope="module")
def blackhole_port():
    """A port that accepts connections and never says a word (a proxy forwarding nothing)."""
    proxy = FaultProxy(free_port()).start()
    proxy.blackhole()
    yield proxy.port
    proxy.stop()


def unreachable_url(kind: str, garbage_port: int, blackhole_port: int) -> tuple[str, str]:
    """(transport URL, what the error line must name) for one way of being unreachable."""
    if kind == "refused":
        port = free_port()
        return f"rabbit://guest:{SECRET}@127.0.0.1:{port}/", f"127.0.0.1:{port}"
    if kind == "wrong port":
        return f"rabbit://guest:{SECRET}@127.0.0.1:{garbage_port}/", f"127.0.0.1:{garbage_port}"
    if kind == "dns":
        return f"rabbit://guest:{SECRET}@no-such-host.invalid:5672/", "no-such-host.invalid"
    return f"rabbit://guest:{SECRET}@127.0.0.1:{blackhole_port}/", f"127.0.0.1:{blackhole_port}"


@pytest.mark.parametrize("kind", ["refused", "wrong port", "dns"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_unreachable_broker_exits_69_at_once(command, kind, garbage_port, blackhole_port, tmp_path):
    url, names = unreachable_url(kind, garbage_port, blackhole_port)
    run = managerctl(*COMMANDS[command], env=env_for(url, tmp_path), timeout=30)
    assert_unavailable(run, CONNECT_TIMEOUT, names=names)
    assert SECRET not in run.stdout + run.stderr


@pytest.mark.parametrize("command", list(COMMANDS))
def test_blackholed_broker_exits_69_within_the_configured_connect_timeout(
    command, garbage_port, blackhole_port, tmp_path
):
    url, names = unreachable_url("blackhole", garbage_port, blackhole_port)
    env = env_for(url, tmp_path, MANAGERCTL_CONNECT_TIMEOUT="0.5")
    run = managerctl(*COMMANDS[command], env=env, timeout=30)
    assert_unavailable(run, 0.5 + START_UP, names=names)


def test_blackholed_broker_exits_69_within_the_default_connect_timeout(
    garbage_port, blackhole_port, tmp_path
):
    url, names = unreachable_url("blackhole", garbage_port, blackhole_port)
    run = managerctl(*COMMANDS["call"], env=env_for(url, tmp_path), timeout=30)
    assert_unavailable(run, CONNECT_TIMEOUT + START_UP, names=names)
    assert "timed out" in run.stderr


def test_a_broker_fault_is_never_passed_off_as_the_remote_method_failing(
    garbage_port, blackhole_port, tmp_path
):
    """Exit 1 means the remote method raised: a local error must never read like that."""
    url, _ = unreachable_url("blackhole", garbage_port, blackhole_port)
    env = env_for(url, tmp_path, MANAGERCTL_CONNECT_TIMEOUT="0.3")
    for command in ("call", "run-periodic --host"):
        run = managerctl(*COMMANDS[command], env=env, timeout=30)
        assert run.returncode not in (0, 1), run
        assert "remote error" not in run.stderr, run
        assert len(run.error_lines) == 1 and "Traceback" not in run.stderr, run


def test_a_refused_connection_says_refused(tmp_path):
    run = managerctl(*COMMANDS["call"], env=env_for(f"rabbit://127.0.0.1:{free_port()}/", tmp_path))
    assert run.returncode == 69, run
    assert "connection refused" in run.stderr, run


def test_dns_failure_says_the_name_does_not_resolve(tmp_path):
    url = "rabbit://guest:guest@no-such-host.invalid:5672/"
    run = managerctl(*COMMANDS["ping"], env=env_for(url, tmp_path))
    assert run.returncode == 69, run
    assert "cannot resolve the host name" in run.stderr, run


def test_every_host_of_a_failover_url_is_tried_and_named(garbage_port, tmp_path):
    dead = free_port()
    url = f"rabbit://guest:{SECRET}@127.0.0.1:{dead},guest:{SECRET}@127.0.0.1:{garbage_port}/"
    run = managerctl(*COMMANDS["ping --all"], env=env_for(url, tmp_path))
    assert_unavailable(run, 2 * CONNECT_TIMEOUT, names=f"127.0.0.1:{dead}")
    assert f"127.0.0.1:{garbage_port}" in run.stderr
    assert SECRET not in run.stderr


def test_the_connect_timeout_of_a_config_file_bounds_the_wait(blackhole_port, tmp_path):
    """connect_timeout = 0.3 in the file: a blackholed broker is given up on in well under the
    default 2 s (this asserts the bound only: the exit code is the blackhole bug above)."""
    config = tmp_path / "managerctl.conf"
    config.write_text(
        "[DEFAULT]\nconnect_timeout = 0.3\n"
        f"transport_url = rabbit://guest:{SECRET}@127.0.0.1:{blackhole_port}/\n"
    )
    run = managerctl("--config-file", str(config), *COMMANDS["call"], env=clean_env())
    assert run.returncode != 0, run
    assert run.elapsed < 2 * 0.3 + START_UP, run
    assert len(run.error_lines) == 1 and "Traceback" not in run.stderr, run
    assert SECRET not in run.stderr


# ---------------------------------------------------------------------------
# Refused credentials

CREDENTIAL_COMMANDS = [
    "call",
    "ping --all",
    "probe",
    "periodic list --host",
    "capabilities show --live",
    "capabilities publish",
]


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("command", CREDENTIAL_COMMANDS)
def test_wrong_credentials_exit_77_and_never_show_the_password(command, debug, rabbitmq, tmp_path):
    # '@' and '/' percent-encoded: neither the raw nor the decoded form may leak.
    password = "Wr0ng%40" + SECRET + "%2F"
    url = f"rabbit://guest:{password}@127.0.0.1:{rabbitmq.port}/"
    run = managerctl(
        *(["--debug"] if debug else []), *COMMANDS[command], env=env_for(url, tmp_path)
    )
    assert run.returncode == 77, run
    assert run.elapsed < CONNECT_TIMEOUT + START_UP, run
    output = run.stdout + run.stderr
    assert SECRET not in output and "Wr0ng" not in output
    assert "refused" in run.stderr and "'guest'" in run.stderr, run
    if not debug:
        assert len(run.error_lines) == 1 and "Traceback" not in run.stderr, run


# ---------------------------------------------------------------------------
# Not broker-facing


def test_services_list_reads_the_store_and_never_needs_the_broker(tmp_path):
    from manager_cli.capabilities import open_store

    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    open_store(store).close()
    url = f"rabbit://guest:guest@127.0.0.1:{free_port()}/"
    run = managerctl(
        "services", "list", "--store-url", store, "-f", "json", env=env_for(url, tmp_path)
    )
    assert run.returncode == 0, run
    assert run.stdout.strip() == "[]", run
