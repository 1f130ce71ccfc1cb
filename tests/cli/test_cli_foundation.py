"""The installed ``managerctl`` console script, run as a subprocess the way a runbook runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

MANAGERCTL = os.path.join(os.path.dirname(sys.executable), "managerctl")
SECRET = "supersecret"
SECRET_URL = f"rabbit://u:{SECRET}@h:5672/"

FAILING_TASK_MODULE = """\
from manager_cli.manager import Manager
from manager_cli.periodic import periodic_task


class Flaky(Manager):
    \"\"\"One task that works and one that raises.\"\"\"

    @periodic_task(spacing=10)
    def works(self, context):
        pass

    @periodic_task(spacing=10)
    def explodes(self, context):
        raise KeyError("no such disk")


class BadHook(Manager):
    \"\"\"pre_start_hook raises, so post_start_hook must not run.\"\"\"

    def pre_start_hook(self):
        raise RuntimeError("cannot start")

    def post_start_hook(self):
        raise AssertionError("post_start_hook ran after a failed pre_start_hook")
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANAGERCTL_")}
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MANAGERCTL, *args],
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        timeout=60,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("managerctl: error:"), result.stderr
    return lines[0]


@pytest.fixture
def flaky_env(tmp_path):
    (tmp_path / "flaky_managers.py").write_text(FAILING_TASK_MODULE)
    (tmp_path / "broken_import_mod.py").write_text("import no_such_dependency_xyz\n")
    pythonpath = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    return clean_env(PYTHONPATH=pythonpath)


def test_console_script_is_installed():
    assert os.access(MANAGERCTL, os.X_OK)


# ---------------------------------------------------------------------------
# --help and start-up


def test_help_lists_the_exit_codes():
    result = run("--help")
    assert result.returncode == 0
    assert "Exit codes:" in result.stdout
    for code in ("0", "1", "2", "3", "69", "75", "77", "78", "130"):
        assert any(line.split()[:1] == [code] for line in result.stdout.splitlines()), code
    assert result.stderr == ""


@pytest.mark.parametrize(
    "command",
    [
        ["managers"],
        ["managers", "list"],
        ["managers", "show"],
        ["hooks", "run"],
        ["periodic", "list"],
        ["run-periodic"],
        ["capabilities"],
        ["config", "show"],
        ["config", "sample"],
    ],
)
def test_every_command_has_help(command):
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: managerctl")


def test_help_imports_no_heavy_module():
    code = textwrap.dedent(
        """\
        import sys
        from manager_cli.cli.main import main
        sys.argv = ["managerctl", "--help"]
        try:
            main()
        except SystemExit:
            pass
        heavy = ("pika", "oslo_config", "rich")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_piped_json_commands_import_no_rich_or_pika():
    code = textwrap.dedent(
        """\
        import sys
        from manager_cli.cli.main import main
        sys.argv = ["managerctl", "run-periodic", "hostinfo", "-f", "json"]
        try:
            main()
        except SystemExit:
            pass
        heavy = ("pika", "oslo_config", "rich")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy), file=sys.stderr)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[]"


def test_one_shot_call_loads_only_what_it_uses():
    """A call pays for no completion helper, csv writer, temp-file module or Rich: each is a few
    ms of a ~100 ms process that bench_oneshot holds within 1.3x of raw pika."""
    code = textwrap.dedent(
        """\
        import json, sys
        from manager_cli.cli.entry import main
        sys.argv = ["managerctl", "call", "h1", "echo", "--topic", "t", "-f", "json"]
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        unused = {"csv", "tempfile", "click.shell_completion", "oslo_config", "yaml"}
        loaded = [m for m in sys.modules if m in unused or m.split(".")[0] == "rich"]
        print(json.dumps({"exit": code, "pika": "pika" in sys.modules, "unused": loaded}))
        """
    )
    # Port 1 refuses at once: the call has imported all it needs by the time it connects.
    env = clean_env(MANAGERCTL_TRANSPORT_URL="rabbit://guest:guest@127.0.0.1:1/")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["exit"] == 69 and seen["pika"], result.stderr
    assert seen["unused"] == [], result.stderr


@pytest.mark.parametrize("module", ["manager_cli", "manager_cli.cli.main"])
def test_python_dash_m(module):
    result = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("managerctl, version ")


def test_unknown_command_is_a_usage_error():
    result = run("nosuch-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "managerctl: error:" in result.stderr


# ---------------------------------------------------------------------------
# managers


def test_managers_list_json_includes_hostinfo():
    result = run("managers", "list", "-f", "json")
    assert result.returncode == 0, result.stderr
    records = {record["name"]: record for record in json.loads(result.stdout)}
    assert records["hostinfo"]["class"] == "manager_cli.examples.hostinfo:HostInfoManager"


def test_managers_show_json():
    result = run("managers", "show", "hostinfo", "-f", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    names = {method["name"] for method in data["rpc_methods"]}
    assert {"echo", "get_facts", "publish_service_capabilities"} <= names
    assert "init_host" not in names
    assert [task["name"] for task in data["periodic_tasks"]][:3] == [
        "publish_service_capabilities",
        "gather_cpu",
        "gather_memory",
    ]
    assert [hook["hook"] for hook in data["hooks"]] == [
        "init_host",
        "pre_start_hook",
        "post_start_hook",
    ]


def test_managers_show_by_module_and_class(flaky_env):
    result = run("managers", "show", "flaky_managers:Flaky", "-f", "json", env=flaky_env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["class"] == "flaky_managers:Flaky"
    assert {task["name"] for task in data["periodic_tasks"]} == {"works", "explodes"}


def test_managers_show_unknown_is_exit_2():
    result = run("managers", "show", "nosuch")
    assert result.returncode == 2
    assert "hostinfo" in assert_one_line_error(result)


def test_manager_that_fails_to_import_exits_78(flaky_env):
    for command in (
        ["managers", "show", "broken_import_mod:Whatever"],
        ["run-periodic", "broken_import_mod:Whatever"],
    ):
        result = run(*command, env=flaky_env)
        assert result.returncode == 78, result.stderr
        line = assert_one_line_error(result)
        assert "no_such_dependency_xyz" in line
        assert result.stdout == ""


def test_not_a_manager_exits_78():
    result = run("managers", "show", "json:dumps")
    assert result.returncode == 78
    assert_one_line_error(result)


# ---------------------------------------------------------------------------
# run-periodic


def test_run_periodic_json_every_task_ok():
    result = run("run-periodic", "hostinfo", "-f", "json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [run_["task"] for run_ in runs] == [
        "publish_service_capabilities",
        "gather_cpu",
        "gather_memory",
        "gather_disk",
        "gather_system",
    ]
    assert {run_["outcome"] for run_ in runs} == {"ok"}


def test_run_periodic_one_task():
    result = run("run-periodic", "hostinfo", "--task", "gather_disk", "-f", "json")
    assert result.returncode == 0, result.stderr
    assert [run_["task"] for run_ in json.loads(result.stdout)] == ["gather_disk"]


def test_piped_table_has_no_escape_codes():
    for command in (["run-periodic", "hostinfo"], ["managers", "show", "hostinfo"]):
        result = run(*command)
        assert result.returncode == 0, result.stderr
        assert "\x1b" not in result.stdout
        assert "\x1b" not in result.stderr


def test_run_periodic_unknown_manager_exits_2():
    result = run("run-periodic", "nosuch")
    assert result.returncode == 2
    assert "nosuch" in assert_one_line_error(result)


def test_run_periodic_unknown_task_exits_2():
    result = run("run-periodic", "hostinfo", "--task", "nosuch")
    assert result.returncode == 2
    line = assert_one_line_error(result)
    assert "gather_cpu" in line  # names the known tasks
    assert result.stdout == ""


def test_run_periodic_failing_task_exits_1(flaky_env):
    result = run("run-periodic", "flaky_managers:Flaky", "-f", "json", env=flaky_env)
    assert result.returncode == 1, result.stderr
    runs = {run_["task"]: run_ for run_ in json.loads(result.stdout)}
    assert runs["works"]["outcome"] == "ok"
    assert runs["explodes"]["outcome"] == "failed"
    assert runs["explodes"]["error"].startswith("KeyError")
    assert "no such disk" in runs["explodes"]["error"]
    assert "explodes" in assert_one_line_error(result)


def test_run_periodic_failing_task_table_names_the_exception(flaky_env):
    result = run("run-periodic", "flaky_managers:Flaky", env=flaky_env)
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith("explodes"))
    assert "failed" in line
    assert "KeyError" in line


def test_debug_shows_a_traceback(flaky_env):
    result = run("--debug", "run-periodic", "flaky_managers:Flaky", "-f", "json", env=flaky_env)
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "managerctl: error:" in result.stderr
    json.loads(result.stdout)  # the data on stdout stays clean


# ---------------------------------------------------------------------------
# Columns


def test_unknown_column_exits_2_naming_the_valid_columns():
    result = run("managers", "list", "-c", "nosuch")
    assert result.returncode == 2
    line = assert_one_line_error(result)
    for column in ("name", "class", "distribution"):
        assert column in line


def test_column_selection():
    result = run("managers", "list", "-f", "csv", "-c", "name")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "name"
    assert "hostinfo" in lines


# ---------------------------------------------------------------------------
# hooks


def test_hooks_run_in_order():
    result = run("hooks", "run", "hostinfo", "-f", "json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [(r["hook"], r["outcome"]) for r in runs] == [
        ("init_host", "ok"),
        ("pre_start_hook", "ok"),
        ("post_start_hook", "ok"),
    ]


def test_hooks_given_out_of_order_run_in_seed_order():
    result = run("hooks", "run", "hostinfo", "post_start_hook", "init_host", "-f", "value")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        "init_host",
        "post_start_hook",
    ]


def test_hooks_unknown_hook_exits_2():
    result = run("hooks", "run", "hostinfo", "start")
    assert result.returncode == 2
    assert "init_host" in assert_one_line_error(result)


def test_failing_hook_exits_1_and_stops(flaky_env):
    result = run("hooks", "run", "flaky_managers:BadHook", "-f", "json", env=flaky_env)
    assert result.returncode == 1, result.stderr
    runs = json.loads(result.stdout)
    assert [(r["hook"], r["outcome"]) for r in runs] == [
        ("init_host", "ok"),
        ("pre_start_hook", "failed"),
    ]
    assert runs[1]["error"] == "RuntimeError: cannot start"
    assert "pre_start_hook" in assert_one_line_error(result)


# ---------------------------------------------------------------------------
# config


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_config_show_masks_the_transport_url_from_the_environment(debug):
    result = run(
        *debug, "config", "show", "-f", "json", env=clean_env(MANAGERCTL_TRANSPORT_URL=SECRET_URL)
    )
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr
    options = {(o["group"], o["name"]): o for o in json.loads(result.stdout)}
    transport = options[("DEFAULT", "transport_url")]
    assert transport["value"] == "rabbit://u:***@h:5672/"
    assert transport["source"] == "environment"


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_config_show_masks_the_transport_url_from_the_command_line(debug):
    result = run(*debug, "--transport-url", SECRET_URL, "config", "show", "-f", "json")
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    options = {(o["group"], o["name"]): o for o in json.loads(result.stdout)}
    assert options[("DEFAULT", "transport_url")]["source"] == "command line"


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_config_show_masks_the_transport_url_from_a_file(tmp_path, debug):
    path = tmp_path / "nova.conf"
    path.write_text(
        f"[DEFAULT]\ntransport_url = rabbit://a:{SECRET}@mq1:5672,b:{SECRET}@mq2:5672/\n"
        "compute_driver = libvirt.LibvirtDriver\n[libvirt]\nvirt_type = kvm\n"
    )
    result = run(*debug, "--config-file", str(path), "config", "show", "-f", "json")
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    options = {(o["group"], o["name"]): o for o in json.loads(result.stdout)}
    assert options[("DEFAULT", "transport_url")]["source"] == str(path)


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_config_error_exits_78_without_leaking_the_password(tmp_path, debug):
    path = tmp_path / "bad.conf"
    # An int option given a URL: the error quotes the value it could not convert.
    path.write_text(f"[DEFAULT]\nrpc_response_timeout = rabbit://u:{SECRET}@h/\n")
    result = run(*debug, "--config-file", str(path), "config", "show")
    assert result.returncode == 78
    assert SECRET not in result.stdout + result.stderr
    assert "rpc_response_timeout" in result.stderr
    if not debug:
        assert_one_line_error(result)


def test_missing_config_file_exits_78(tmp_path):
    result = run("--config-file", str(tmp_path / "missing.conf"), "config", "show")
    assert result.returncode == 78
    assert "missing.conf" in assert_one_line_error(result)


def test_bad_environment_value_exits_78():
    result = run("config", "show", env=clean_env(MANAGERCTL_RPC_RESPONSE_TIMEOUT="soon"))
    assert result.returncode == 78
    assert "rpc_response_timeout" in assert_one_line_error(result)


def test_config_sample():
    result = run("config", "sample")
    assert result.returncode == 0, result.stderr
    assert "transport_url" in result.stdout
    assert "[oslo_messaging_rabbit]" in result.stdout
    assert "[DEFAULT]" in result.stdout
    # The sample documents the option, not this machine's host name.
    assert "#host = <the machine's host name>" in result.stdout


def test_config_sample_to_a_file(tmp_path):
    target = tmp_path / "managerctl.conf.sample"
    result = run("config", "sample", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert "heartbeat_timeout_threshold" in target.read_text()
