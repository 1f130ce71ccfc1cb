"""Tests for manager_cli.config: defaults, environment, oslo.config files, overrides."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest

from manager_cli.config import (
    DEFAULT_GROUP,
    MANAGERCTL_GROUP,
    OPTIONS,
    RABBIT_GROUP,
    list_opts,
    load_settings,
    rabbit_options,
)
from manager_cli.errors import EXIT_CONFIG, ConfigError

NOVA_CONF = """\
[DEFAULT]
transport_url = rabbit://nova:mqpass@mq1:5672,nova:mqpass@mq2:5672/
control_exchange = nova
compute_driver = libvirt.LibvirtDriver
my_ip = 10.0.0.5
instances_path = /var/lib/nova/instances
debug = true

[libvirt]
virt_type = kvm
cpu_mode = host-passthrough

[database]
connection = mysql+pymysql://nova:secret@db/nova

[api_database]
connection = mysql+pymysql://nova:secret@db/nova_api

[keystone_authtoken]
password = x
auth_url = http://keystone:5000/

[placement]
region_name = RegionOne

[oslo_messaging_rabbit]
heartbeat_timeout_threshold = 30
rabbit_ha_queues = true
"""

SET_IN_NOVA_CONF = {
    (DEFAULT_GROUP, "transport_url"),
    (DEFAULT_GROUP, "control_exchange"),
    (RABBIT_GROUP, "heartbeat_timeout_threshold"),
    (RABBIT_GROUP, "rabbit_ha_queues"),
}


@pytest.fixture
def nova_conf(tmp_path):
    path = tmp_path / "nova.conf"
    path.write_text(NOVA_CONF)
    return path


def by_key(settings):
    return {(option.group, option.name): option for option in settings.describe()}


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


# ---------------------------------------------------------------------------
# Defaults


def test_defaults_without_files_or_environment(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "node-a")
    settings = load_settings(environ={})
    assert settings.host == "node-a"
    assert settings.transport_url == "rabbit://"
    assert settings.control_exchange == "openstack"
    assert settings.rpc_response_timeout == 60
    assert settings.periodic_fuzzy_delay == 60
    assert settings.run_external_periodic_tasks is True
    assert settings.report_interval == 10
    assert settings.service_down_time == 60
    assert settings.get("heartbeat_timeout_threshold", RABBIT_GROUP) == 60
    assert settings.config_files == ()
    assert {option.source for option in settings.describe()} == {"default"}


def test_every_option_is_described_once():
    settings = load_settings(environ={})
    keys = [(option.group, option.name) for option in settings.describe()]
    assert sorted(keys) == sorted((spec.group, spec.name) for spec in OPTIONS)
    assert len(keys) == len(set(keys))


def test_no_file_does_not_import_oslo_config():
    code = (
        "import sys\n"
        "from manager_cli.config import load_settings\n"
        "load_settings(environ={})\n"
        "print('oslo_config' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_a_file_does_import_oslo_config(nova_conf):
    # The counterpart of the test above, so that one cannot pass by accident.
    code = (
        "import sys\n"
        "from manager_cli.config import load_settings\n"
        f"load_settings([{str(nova_conf)!r}], environ={{}})\n"
        "print('oslo_config' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "True"


def test_unknown_option_lookups():
    settings = load_settings(environ={})
    with pytest.raises(ConfigError):
        settings.get("nosuch")
    with pytest.raises(ConfigError):
        settings.get("transport_url", RABBIT_GROUP)
    with pytest.raises(AttributeError):
        _ = settings.nosuch


# ---------------------------------------------------------------------------
# Environment


def test_transport_url_from_environment():
    settings = load_settings(environ={"MANAGERCTL_TRANSPORT_URL": "rabbit://u:p@mq:5672/"})
    assert settings.transport_url == "rabbit://u:p@mq:5672/"
    option = by_key(settings)[(DEFAULT_GROUP, "transport_url")]
    assert option.source == "environment"
    assert option.secret is True


def test_int_from_environment_is_converted():
    settings = load_settings(environ={"MANAGERCTL_RPC_RESPONSE_TIMEOUT": " 15 "})
    assert settings.rpc_response_timeout == 15
    assert by_key(settings)[(DEFAULT_GROUP, "rpc_response_timeout")].source == "environment"


@pytest.mark.parametrize(("raw", "expected"), [("no", False), ("0", False), ("TRUE", True)])
def test_bool_from_environment(raw, expected):
    settings = load_settings(environ={"MANAGERCTL_PERIODIC_ENABLE": raw})
    assert settings.periodic_enable is expected


def test_empty_environment_value_is_ignored():
    settings = load_settings(environ={"MANAGERCTL_RPC_RESPONSE_TIMEOUT": ""})
    assert settings.rpc_response_timeout == 60
    assert by_key(settings)[(DEFAULT_GROUP, "rpc_response_timeout")].source == "default"


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("MANAGERCTL_RPC_RESPONSE_TIMEOUT", "soon"),
        ("MANAGERCTL_CONNECT_TIMEOUT", "fast"),
        ("MANAGERCTL_PERIODIC_ENABLE", "maybe"),
    ],
)
def test_bad_environment_value_is_a_config_error(name, raw):
    with pytest.raises(ConfigError) as info:
        load_settings(environ={name: raw})
    assert info.value.exit_code == EXIT_CONFIG
    assert repr(raw) in str(info.value)


def test_environment_beats_the_config_file(nova_conf):
    settings = load_settings([str(nova_conf)], environ={"MANAGERCTL_CONTROL_EXCHANGE": "from-env"})
    assert settings.control_exchange == "from-env"
    assert by_key(settings)[(DEFAULT_GROUP, "control_exchange")].source == "environment"


def test_config_file_from_environment(nova_conf):
    settings = load_settings(environ={"MANAGERCTL_CONFIG_FILE": str(nova_conf)})
    assert settings.control_exchange == "nova"
    assert settings.config_files == (str(nova_conf),)


# ---------------------------------------------------------------------------
# Config files


def test_config_file_values_and_source(nova_conf):
    settings = load_settings([str(nova_conf)], environ={})
    options = by_key(settings)
    assert settings.transport_url == "rabbit://nova:mqpass@mq1:5672,nova:mqpass@mq2:5672/"
    assert settings.control_exchange == "nova"
    assert settings.get("heartbeat_timeout_threshold", RABBIT_GROUP) == 30
    for key in SET_IN_NOVA_CONF:
        assert options[key].source == str(nova_conf)
    assert options[(DEFAULT_GROUP, "rpc_response_timeout")].source == "default"
    assert settings.config_files == (str(nova_conf),)


def test_unknown_options_and_groups_are_ignored(nova_conf):
    settings = load_settings([str(nova_conf)], environ={})
    keys = set(by_key(settings))
    assert keys == {(spec.group, spec.name) for spec in OPTIONS}
    assert "compute_driver" not in {name for _, name in keys}
    with pytest.raises(AttributeError):
        _ = settings.compute_driver


def test_file_defaults_equal_no_file_defaults(nova_conf, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "node-a")
    from_file = by_key(load_settings([str(nova_conf)], environ={}))
    no_file = by_key(load_settings(environ={}))
    assert set(from_file) == set(no_file)
    for key, option in no_file.items():
        if key in SET_IN_NOVA_CONF:
            continue
        assert from_file[key].value == option.value, key
        assert type(from_file[key].value) is type(option.value), key
        assert from_file[key].source == "default", key


def test_host_from_file_overrides_the_host_name(tmp_path):
    path = write(tmp_path, "a.conf", "[DEFAULT]\nhost = compute-42\n")
    assert load_settings([path], environ={}).host == "compute-42"


def test_later_file_wins(tmp_path):
    first = write(tmp_path, "1.conf", "[DEFAULT]\ncontrol_exchange = one\n")
    second = write(tmp_path, "2.conf", "[DEFAULT]\ncontrol_exchange = two\n")
    settings = load_settings([first, second], environ={})
    assert settings.control_exchange == "two"
    assert by_key(settings)[(DEFAULT_GROUP, "control_exchange")].source == second


def test_config_dir_is_read(tmp_path):
    directory = tmp_path / "conf.d"
    directory.mkdir()
    (directory / "10-mq.conf").write_text("[DEFAULT]\ncontrol_exchange = fromdir\n")
    (directory / "ignored.txt").write_text("[DEFAULT]\ncontrol_exchange = nope\n")
    settings = load_settings(config_dirs=[str(directory)], environ={})
    assert settings.control_exchange == "fromdir"
    assert settings.config_files == (str(directory / "10-mq.conf"),)


def test_missing_config_dir_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_dirs=[str(tmp_path / "nosuch")], environ={})


def test_missing_config_file_is_a_config_error(tmp_path):
    missing = str(tmp_path / "missing.conf")
    with pytest.raises(ConfigError) as info:
        load_settings([missing], environ={})
    assert info.value.exit_code == EXIT_CONFIG
    assert missing in str(info.value)


def test_config_file_syntax_error_is_a_config_error(tmp_path):
    path = write(tmp_path, "bad.conf", "[DEFAULT\ntransport_url = rabbit://\n")
    with pytest.raises(ConfigError) as info:
        load_settings([path], environ={})
    assert info.value.exit_code == EXIT_CONFIG
    assert path in str(info.value)


def test_invalid_int_in_file_is_a_config_error(tmp_path):
    path = write(tmp_path, "bad.conf", "[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = x\n")
    with pytest.raises(ConfigError) as info:
        load_settings([path], environ={})
    message = str(info.value)
    assert info.value.exit_code == EXIT_CONFIG
    assert "[oslo_messaging_rabbit] heartbeat_timeout_threshold" in message
    assert path in message
    # One readable line, not oslo.config's internal LocationInfo repr.
    assert "LocationInfo" not in message
    assert "\n" not in message


def test_invalid_bool_in_file_is_a_config_error(tmp_path):
    path = write(tmp_path, "bad.conf", "[DEFAULT]\nperiodic_enable = perhaps\n")
    with pytest.raises(ConfigError, match="periodic_enable"):
        load_settings([path], environ={})


# ---------------------------------------------------------------------------
# Overrides


def test_with_overrides_sets_command_line_source():
    base = load_settings(environ={"MANAGERCTL_TRANSPORT_URL": "rabbit://env/"})
    settings = base.with_overrides({"transport_url": "rabbit://cli/"})
    assert settings.transport_url == "rabbit://cli/"
    assert by_key(settings)[(DEFAULT_GROUP, "transport_url")].source == "command line"
    # The original is unchanged.
    assert base.transport_url == "rabbit://env/"


def test_with_overrides_ignores_none():
    base = load_settings(environ={"MANAGERCTL_TRANSPORT_URL": "rabbit://env/"})
    settings = base.with_overrides({"transport_url": None})
    assert settings.transport_url == "rabbit://env/"
    assert by_key(settings)[(DEFAULT_GROUP, "transport_url")].source == "environment"


def test_with_overrides_keeps_config_files(nova_conf):
    settings = load_settings([str(nova_conf)], environ={}).with_overrides({"host": "h"})
    assert settings.config_files == (str(nova_conf),)
    assert settings.host == "h"


# ---------------------------------------------------------------------------
# list_opts: one source of defaults


def test_list_opts_groups_and_defaults():
    from oslo_config import cfg

    groups = dict(list_opts())
    assert set(groups) == {DEFAULT_GROUP, RABBIT_GROUP, MANAGERCTL_GROUP}
    specs = {(spec.group, spec.name): spec for spec in OPTIONS}
    seen = set()
    for group, opts in groups.items():
        for opt in opts:
            assert isinstance(opt, cfg.Opt)
            spec = specs[(group, opt.name)]
            assert opt.default == spec.default, opt.name
            assert opt.secret == spec.secret, opt.name
            seen.add((group, opt.name))
    assert seen == set(specs)


def test_list_opts_names_the_options_openstack_uses():
    groups = {group: {opt.name for opt in opts} for group, opts in list_opts()}
    assert {"host", "transport_url", "control_exchange", "rpc_response_timeout"} <= groups[
        DEFAULT_GROUP
    ]
    assert "heartbeat_timeout_threshold" in groups[RABBIT_GROUP]


def test_list_opts_types_match_specs():
    from oslo_config import cfg

    kinds = {
        "str": cfg.StrOpt,
        "int": cfg.IntOpt,
        "float": cfg.FloatOpt,
        "bool": cfg.BoolOpt,
        "list": cfg.ListOpt,
    }
    specs = {(spec.group, spec.name): spec for spec in OPTIONS}
    for group, opts in list_opts():
        for opt in opts:
            assert type(opt) is kinds[specs[(group, opt.name)].type], opt.name


def test_list_option_from_environment_and_file(tmp_path):
    from_env = load_settings(environ={"MANAGERCTL_COLLECTOR_TOPICS": "compute, network,"})
    assert from_env.collector_topics == ["compute", "network"]
    conf = tmp_path / "m.conf"
    conf.write_text("[DEFAULT]\ncollector_topics = volume,backup\n")
    from_file = load_settings([str(conf)], environ={})
    assert from_file.collector_topics == ["volume", "backup"]
    # Unset: the publishers of scheduler_topic's family (capabilities.families).
    assert load_settings(environ={}).collector_topics is None


def test_host_sample_default_is_not_this_machine():
    groups = dict(list_opts())
    host = next(opt for opt in groups[DEFAULT_GROUP] if opt.name == "host")
    assert host.default is None
    assert host.sample_default == "<the machine's host name>"


def test_rabbit_options_include_transport_settings(nova_conf):
    options = rabbit_options(load_settings([str(nova_conf)], environ={}))
    assert options["heartbeat_timeout_threshold"] == 30
    assert options["control_exchange"] == "nova"
    assert options["connect_timeout"] == 2.0
    assert "transport_url" not in options


def test_max_message_size_default_is_the_servers():
    from manager_cli.rpc.server import DEFAULT_MAX_MESSAGE_BYTES

    assert load_settings(environ={}).max_message_size == DEFAULT_MAX_MESSAGE_BYTES
    raised = load_settings(environ={"MANAGERCTL_MAX_MESSAGE_SIZE": "16777216"})
    assert raised.max_message_size == 16 * 1024 * 1024


# -- a service's own config file (issue 13) ------------------------------------------------


def _service_and_own(tmp_path, service_name="nova.conf"):
    service = tmp_path / service_name
    service.write_text(
        "[DEFAULT]\nhost = peer-compute1\nreport_interval = 9\nperiodic_fuzzy_delay = 0\n"
        "transport_url = rabbit://u:p@broker:5672/\nrpc_ping_enabled = true\n"
        "[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 30\n"
    )
    own = tmp_path / "managerctl.conf"
    own.write_text("[DEFAULT]\nreport_interval = 2\n")
    return service, own


def test_a_service_file_sets_only_how_to_reach_the_service(tmp_path):
    service, _ = _service_and_own(tmp_path)
    settings = load_settings([str(service)], environ={})
    assert settings.transport_url == "rabbit://u:p@broker:5672/"
    assert settings.rpc_ping_enabled is True
    assert settings.get("heartbeat_timeout_threshold", "oslo_messaging_rabbit") == 30
    # nova's host and timers describe nova, not managerctl
    assert settings.host != "peer-compute1" and settings.source("host") == "default"
    assert settings.report_interval == 10 and settings.periodic_fuzzy_delay == 60
    assert settings.service_host == "peer-compute1"
    assert {(o.name, o.value) for o in settings.ignored} == {
        ("host", "peer-compute1"),
        ("report_interval", 9),
        ("periodic_fuzzy_delay", 0),
    }


def test_a_service_file_before_managerctls_own_cannot_lend_it_its_host(tmp_path):
    service, own = _service_and_own(tmp_path)
    for files in ([service, own], [own, service]):
        settings = load_settings([str(f) for f in files], environ={})
        assert settings.host != "peer-compute1", files
        assert settings.source("host") == "default"
        assert settings.report_interval == 2 and settings.source("report_interval") == str(own)
        assert settings.service_host == "peer-compute1"


def test_a_file_is_a_services_by_name_or_by_its_sections_unless_it_says_managerctl(tmp_path):
    from manager_cli.config import is_service_config

    named = tmp_path / "cinder.conf"
    named.write_text("[DEFAULT]\nhost = x\n")
    sections = tmp_path / "svc.conf"
    sections.write_text("[DEFAULT]\nhost = x\n[keystone_authtoken]\nauth_url = http://k\n")
    own = tmp_path / "cinder-tools.conf"
    own.write_text("[DEFAULT]\nhost = x\n[database]\nconnection = sqlite://\n[managerctl]\n")
    plain = tmp_path / "ops.conf"
    plain.write_text("[DEFAULT]\nhost = x\n")
    assert is_service_config(str(named)) and is_service_config(str(sections))
    assert not is_service_config(str(own)) and not is_service_config(str(plain))


def test_settings_attributes_are_typed_as_their_option_specs():
    """mypy reads Settings' annotations; __getattr__ serves the values. Each [DEFAULT] option
    has an annotation of its spec's type (optional when it has no default), and nothing else
    is annotated as if it were an option."""
    import typing

    from manager_cli import config

    python_type = {"str": str, "int": int, "float": float, "bool": bool, "list": list[str]}
    hints = typing.get_type_hints(config.Settings)
    options = {name for group, name in config._SPECS if group == config.DEFAULT_GROUP}
    assert set(hints) == options
    for (group, name), spec in config._SPECS.items():
        if group != config.DEFAULT_GROUP:
            continue
        expected: object = python_type[spec.type]
        if spec.default is None and spec.default_factory is None:
            expected = expected | None
        assert hints[name] == expected, name
        value = config.load_settings(environ={}).get(name)
        assert value is None or isinstance(value, typing.get_origin(expected) or expected), name
