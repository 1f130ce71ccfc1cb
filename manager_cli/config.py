"""Configuration: the options managerctl reads, with one source of defaults.

The options are declared once, as plain ``OptionSpec`` records. When a config file is in play they
are registered with oslo.config and read exactly as an OpenStack service reads them (so an
existing ``nova.conf`` with ``transport_url`` and ``[oslo_messaging_rabbit]`` works, and its many
unknown options are ignored). When no config file is in play, oslo.config is not imported at all
(it costs ~60 ms of start-up) and the same specs give the same defaults. Precedence, highest
first: command line, ``MANAGERCTL_<OPTION>`` environment, config files, defaults.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

DEFAULT_GROUP = "DEFAULT"
RABBIT_GROUP = "oslo_messaging_rabbit"
MANAGERCTL_GROUP = "managerctl"
ENV_PREFIX = "MANAGERCTL_"


@dataclass(frozen=True)
class OptionSpec:
    """One option: its group, type, default and help, independent of oslo.config."""

    name: str
    type: str  # "str", "int", "float", "bool" or "list" (comma separated)
    default: Any
    help: str
    group: str = DEFAULT_GROUP
    secret: bool = False
    sample_default: str | None = None
    default_factory: Callable[[], Any] | None = None
    # May a service's own config file (nova.conf, cinder.conf) set it? Only what says how to
    # reach and speak to that service; managerctl's own behaviour (heartbeats, periodic timers,
    # the store) comes from managerctl's files, the environment or the command line.
    shared: bool = False

    def default_value(self) -> Any:
        return self.default_factory() if self.default_factory else self.default


def _hostname() -> str:
    return socket.gethostname()


def _processname() -> str:
    import sys

    return os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "managerctl"


OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "host",
        "str",
        None,
        "Name of this node: the server part of the TOPIC.HOST queue a service consumes.",
        sample_default="<the machine's host name>",
        default_factory=_hostname,
    ),
    OptionSpec(
        "transport_url",
        "str",
        "rabbit://",
        "The messaging transport: rabbit://user:pass@host:port[,host2:port2]/vhost. "
        "The default rabbit:// means guest:guest@localhost:5672.",
        secret=True,
        shared=True,
    ),
    OptionSpec(
        "control_exchange",
        "str",
        "openstack",
        "The topic exchange RPC requests go to; OpenStack projects set their own (nova, ...).",
        shared=True,
    ),
    OptionSpec(
        "rpc_response_timeout",
        "int",
        60,
        "Seconds to wait for the reply to an RPC call.",
        shared=True,
    ),
    OptionSpec(
        "rpc_ping_enabled",
        "bool",
        False,
        "The services probed answer oslo's oslo_rpc_server_ping (their [DEFAULT] "
        "rpc_ping_enabled, read from their own config file): probe them with it.",
        shared=True,
    ),
    OptionSpec(
        "enabled_backends",
        "list",
        [],
        "cinder-volume backends of the host (read from cinder.conf): a probe of topic "
        "cinder-volume checks the HOST@BACKEND server of each.",
        shared=True,
    ),
    OptionSpec(
        "connect_timeout",
        "float",
        2.0,
        "Seconds to wait for the broker to accept a connection before giving up on a host.",
    ),
    OptionSpec(
        "max_message_size",
        "int",
        1024 * 1024,
        "Largest request body (bytes) a served manager accepts; larger ones get a "
        "MessageTooLarge error reply. oslo.messaging servers have no such limit: raise it if "
        "your clients send bigger payloads.",
    ),
    OptionSpec("periodic_enable", "bool", True, "Run periodic tasks in served managers."),
    OptionSpec(
        "periodic_fuzzy_delay",
        "int",
        60,
        "Largest random delay (seconds) before a service's first periodic run, so that hosts "
        "do not all run at once; 0 for none.",
    ),
    OptionSpec(
        "periodic_interval_max",
        "int",
        60,
        "Longest time (seconds) the periodic timer sleeps between passes; 0 for no cap.",
    ),
    OptionSpec(
        "run_external_periodic_tasks",
        "bool",
        True,
        "Run periodic tasks marked external_process_ok in this process.",
    ),
    OptionSpec("report_interval", "int", 10, "Seconds between a service's state reports."),
    OptionSpec(
        "service_down_time",
        "int",
        60,
        "A service whose last state report is older than this (seconds) is shown as down.",
    ),
    OptionSpec(
        "capabilities_store",
        "str",
        None,
        "Where capabilities and service heartbeats are kept: a SQLite path, sqlite:///PATH, or "
        "postgresql://user:pass@host/db to share one store (needs managerctl[postgres]).",
        secret=True,
        sample_default="$XDG_STATE_HOME/managerctl/capabilities.sqlite",
    ),
    OptionSpec(
        "scheduler_topic",
        "str",
        "scheduler",
        "The scheduler topic of a SchedulerDependentManager family: capabilities are fanout-cast "
        "to <scheduler_topic>_fanout, and the collector joins that fanout through a queue of its "
        "own (never the topic's shared queue). The seed's is scheduler; cinder's is "
        "cinder-scheduler (the name and meaning of cinder's own [DEFAULT] scheduler_topic).",
    ),
    OptionSpec(
        "collector_topics",
        "list",
        None,
        "Publishers asked to publish at collector start-up and by capabilities publish, as "
        "TOPIC or TOPIC:VERSION (the version publish_service_capabilities is cast at), besides "
        "the managerctl services that reported a heartbeat. Default: the known publishers of "
        "scheduler_topic's family (scheduler: hostinfo:1.0; cinder-scheduler: cinder-volume:3.0).",
        sample_default="<the publishers of scheduler_topic's family>",
    ),
    OptionSpec(
        "capabilities_history_keep",
        "int",
        60,
        "Changes of history the store keeps per (service, host); 0 keeps every one.",
    ),
    OptionSpec(
        "capabilities_history_max_age",
        "float",
        86400.0,
        "History older than this (seconds) is dropped by the collector; 0 keeps it forever.",
    ),
    OptionSpec(
        "services_prune_after",
        "float",
        0.0,
        "The collector forgets a service whose last heartbeat is older than this (seconds), as "
        "nova service-delete would; 0 never (services prune does it by hand).",
    ),
    OptionSpec(
        "capabilities_stale_after",
        "float",
        180.0,
        "Capabilities older than this (seconds) are shown as stale: three missed publications.",
    ),
    OptionSpec(
        "metrics_listen",
        "str",
        None,
        "HOST:PORT where `serve` exposes Prometheus metrics at /metrics (e.g. 127.0.0.1:9464, "
        ":9464 for all interfaces); unset, no metrics are collected or exposed.",
        group=MANAGERCTL_GROUP,
    ),
    OptionSpec(
        "heartbeat_timeout_threshold",
        "int",
        60,
        "AMQP heartbeat timeout in seconds; 0 disables heartbeats.",
        group=RABBIT_GROUP,
    ),
    OptionSpec("ssl", "bool", False, "Connect to the broker over TLS.", group=RABBIT_GROUP),
    OptionSpec("ssl_ca_file", "str", None, "CA bundle to verify the broker.", group=RABBIT_GROUP),
    OptionSpec("ssl_cert_file", "str", None, "Client certificate file.", group=RABBIT_GROUP),
    OptionSpec("ssl_key_file", "str", None, "Client private key file.", group=RABBIT_GROUP),
    OptionSpec(
        "rabbit_login_method",
        "str",
        "AMQPLAIN",
        "The AMQP login method (AMQPLAIN or PLAIN).",
        group=RABBIT_GROUP,
    ),
    OptionSpec("amqp_durable_queues", "bool", False, "Declare durable queues.", group=RABBIT_GROUP),
    OptionSpec(
        "amqp_auto_delete", "bool", False, "Declare auto-delete queues.", group=RABBIT_GROUP
    ),
    OptionSpec(
        "rabbit_transient_queues_ttl",
        "int",
        1800,
        "Seconds an unused reply or fanout queue lives (x-expires).",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "rabbit_qos_prefetch_count",
        "int",
        0,
        "Prefetch count of each consumer (basic.qos per consumer, never global); 0 lets a "
        "served manager pick a bound from its worker count.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "rabbit_retry_interval",
        "float",
        1.0,
        "Seconds before the first reconnection attempt.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "rabbit_retry_backoff",
        "float",
        2.0,
        "Seconds added to the reconnection delay after each failed attempt.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "rabbit_interval_max",
        "float",
        30.0,
        "Longest delay between reconnection attempts.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "kombu_missing_consumer_retry_timeout",
        "float",
        60.0,
        "How long a server retries a reply whose reply queue has no consumer.",
        group=RABBIT_GROUP,
    ),
    # The options that change the topology or the body (TOPOLOGIES.md): set them as the
    # deployment's services do, or serve refuses to start (exit 78) rather than declare a queue
    # of another shape.
    OptionSpec(
        "rabbit_quorum_queue",
        "bool",
        False,
        "Quorum topic queues (x-queue-type: quorum), durable, with a durable control exchange.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "rabbit_quorum_delivery_limit",
        "int",
        0,
        "x-delivery-limit of quorum queues; 0 for none.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "rabbit_quorum_max_memory_length",
        "int",
        0,
        "x-max-in-memory-length of quorum queues; 0 for none.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "rabbit_quorum_max_memory_bytes",
        "int",
        0,
        "x-max-in-memory-bytes of quorum queues; 0 for none.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "rabbit_transient_quorum_queue",
        "bool",
        False,
        "Quorum reply and fanout queues, and durable fanout exchanges.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "rabbit_stream_fanout",
        "bool",
        False,
        "One shared stream per fanout (<topic>_fanout) instead of a queue per server; needs "
        "rabbit_transient_quorum_queue and rabbit_qos_prefetch_count > 0.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "use_queue_manager",
        "bool",
        False,
        "Name reply and fanout queues <hostname>:<processname>:<n> instead of random ones.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "hostname",
        "str",
        None,
        "Host name in queue manager names.",
        group=RABBIT_GROUP,
        sample_default="<the machine's host name>",
        default_factory=_hostname,
    ),
    OptionSpec(
        "processname",
        "str",
        None,
        "Process name in queue manager names.",
        group=RABBIT_GROUP,
        sample_default="<the program's name>",
        default_factory=_processname,
    ),
    OptionSpec(
        "rabbit_ha_queues",
        "bool",
        False,
        "Declare queues with x-ha-policy: all (classic mirroring; gone in RabbitMQ 4).",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "enable_cancel_on_failover",
        "bool",
        False,
        "Consume with x-cancel-on-ha-failover.",
        group=RABBIT_GROUP,
    ),
    OptionSpec(
        "kombu_compression",
        "str",
        None,
        "Compress every message body (gzip or bz2, as kombu does); compressed messages are "
        "read whatever this says.",
        group=RABBIT_GROUP,
    ),
)

_SPECS: dict[tuple[str, str], OptionSpec] = {(spec.group, spec.name): spec for spec in OPTIONS}

# oslo.config's Boolean words (and so oslo.messaging's, for transport URL options too).
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def boolean(text: str) -> bool:
    """``true``/``1``/``yes``/``on`` or their opposites, as oslo.config reads them."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected true or false")


def default(name: str, group: str = RABBIT_GROUP) -> Any:
    """The declared default of an option (the transport's options take theirs from here)."""
    return _SPECS[(group, name)].default


def convert(spec: OptionSpec, raw: str) -> Any:
    """Convert a string (from the environment or the command line) to the option's type."""
    text = raw.strip()
    try:
        if spec.type == "bool":
            return boolean(text)
        if spec.type == "int":
            return int(text)
        if spec.type == "float":
            return float(text)
        if spec.type == "list":
            return [item.strip() for item in text.split(",") if item.strip()]
    except ValueError as exc:
        shown = "***" if spec.secret else repr(raw)
        raise ConfigError(
            f"invalid value {shown} for option {spec.name}: {exc}",
            hint=f"give a valid {spec.type}",
        ) from None
    return raw


def list_opts() -> list[tuple[str, list[Any]]]:
    """The options as oslo.config Opt objects, for ``oslo-config-generator``."""
    from oslo_config import cfg

    kinds = {
        "str": cfg.StrOpt,
        "int": cfg.IntOpt,
        "float": cfg.FloatOpt,
        "bool": cfg.BoolOpt,
        "list": cfg.ListOpt,
    }
    groups: dict[str, list[Any]] = {}
    for spec in OPTIONS:
        opt = kinds[spec.type](
            spec.name,
            default=spec.default_value() if spec.default_factory is None else None,
            sample_default=spec.sample_default,
            secret=spec.secret,
            help=spec.help,
        )
        groups.setdefault(spec.group, []).append(opt)
    return list(groups.items())


@dataclass(frozen=True)
class OptionValue:
    """An option's effective value and where it came from."""

    group: str
    name: str
    value: Any
    source: str  # "default", "environment", "command line" or a config file path
    secret: bool


class Settings:
    """The effective options: ``settings.host``, ``settings.get(name, group)``.

    ``ignored`` lists what a service's own config file set but may not decide for managerctl
    (``config show`` shows them); ``service_host`` is the ``host`` such a file names: the
    default server to probe, ping or call, never managerctl's own identity.
    """

    # The [DEFAULT] options as attributes, typed for mypy; __getattr__ serves them at run time
    # (tests/unit/test_config.py pins these annotations to the OptionSpecs above).
    host: str
    transport_url: str
    control_exchange: str
    rpc_response_timeout: int
    rpc_ping_enabled: bool
    enabled_backends: list[str]
    connect_timeout: float
    max_message_size: int
    periodic_enable: bool
    periodic_fuzzy_delay: int
    periodic_interval_max: int
    run_external_periodic_tasks: bool
    report_interval: int
    service_down_time: int
    capabilities_store: str | None
    scheduler_topic: str
    collector_topics: list[str] | None
    capabilities_history_keep: int
    capabilities_history_max_age: float
    services_prune_after: float
    capabilities_stale_after: float

    def __init__(
        self,
        values: Mapping[tuple[str, str], OptionValue],
        config_files: Sequence[str],
        ignored: Sequence[OptionValue] = (),
        service_host: str | None = None,
    ):
        self._values = dict(values)
        self.config_files = tuple(config_files)
        self.ignored = tuple(ignored)
        self._service_host = service_host

    @property
    def service_host(self) -> str:
        """The server a probe, ping or call addresses when none is given."""
        return self._service_host or self.host

    def source(self, name: str, group: str = DEFAULT_GROUP) -> str:
        """Where an option's value came from: "default", "environment", a file, ..."""
        try:
            return self._values[(group, name)].source
        except KeyError:
            raise ConfigError(f"no such option [{group}] {name}") from None

    def explicit(self, name: str, group: str = DEFAULT_GROUP) -> Any:
        """The option's value when something set it, else None (so a caller may infer one)."""
        return None if self.source(name, group) == "default" else self.get(name, group)

    def get(self, name: str, group: str = DEFAULT_GROUP) -> Any:
        try:
            return self._values[(group, name)].value
        except KeyError:
            raise ConfigError(f"no such option [{group}] {name}") from None

    if not TYPE_CHECKING:  # so that mypy flags a name that is not an option

        def __getattr__(self, name: str) -> Any:
            if name.startswith("_"):
                raise AttributeError(name)
            try:
                return self._values[(DEFAULT_GROUP, name)].value
            except KeyError:
                raise AttributeError(name) from None

    def describe(self) -> list[OptionValue]:
        """Every option with its value and source (secrets are still in clear: mask to show)."""
        return list(self._values.values())

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with DEFAULT-group options set from the command line."""
        values = dict(self._values)
        for name, value in overrides.items():
            if value is None:
                continue
            spec = _SPECS[(DEFAULT_GROUP, name)]
            values[(DEFAULT_GROUP, name)] = OptionValue(
                DEFAULT_GROUP, name, value, "command line", spec.secret
            )
        return Settings(values, self.config_files, self.ignored, self._service_host)


def _files_from_dirs(config_dirs: Iterable[str]) -> list[str]:
    files: list[str] = []
    for directory in config_dirs:
        if not os.path.isdir(directory):
            raise ConfigError(
                f"config directory {directory} does not exist", hint="check --config-dir"
            )
        files.extend(
            os.path.join(directory, name)
            for name in sorted(os.listdir(directory))
            if name.endswith(".conf")
        )
    return files


def _invalid_value_message(spec: OptionSpec, exc: Exception) -> str:
    # oslo.config says "Value for option X from LocationInfo(location=<Locations.user: (4, True)>,
    # detail='/etc/nova/nova.conf') is not valid: <cause>"; keep the file and the cause only.
    text = str(exc)
    _, found, cause = text.partition(" is not valid: ")
    where = re.search(r"detail='([^']+)'", text)
    place = f" in {where.group(1)}" if where else ""
    return f"invalid value for [{spec.group}] {spec.name}{place}: {cause if found else text}"


_SERVICE_SECTIONS = re.compile(
    r"^\s*\[(database|api_database|keystone_authtoken|placement|nova|glance)\]\s*$", re.M
)
_OWN_SECTION = re.compile(r"^\s*\[managerctl\]\s*$", re.M)


def is_service_config(path: str) -> bool:
    """True for a service's own config file (nova.conf, cinder.conf, ...), not managerctl's.

    Known by its name, or by the sections only a service has ([database],
    [keystone_authtoken], ...); a [managerctl] section makes any file managerctl's own.
    """
    from .families import SERVICE_CONFIG_NAMES

    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read(1024 * 1024)
    except OSError:
        return False
    if _OWN_SECTION.search(text):
        return False
    return os.path.basename(path) in SERVICE_CONFIG_NAMES or bool(_SERVICE_SECTIONS.search(text))


class _FileValues(dict):
    """The values read from config files, plus what a service's file set that was ignored."""

    ignored: list[OptionValue]
    service_host: str | None


def _parse_files(files: Sequence[str]) -> Any:
    """The files parsed by oslo.config with managerctl's options registered."""
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    for group, opts in list_opts():
        conf.register_opts(opts, group=None if group == DEFAULT_GROUP else group)
    try:
        conf(args=[], project="managerctl", default_config_files=list(files), use_env=False)
    except cfg.Error as exc:
        raise ConfigError(f"invalid configuration: {exc}", hint="fix the config file") from None
    return conf


def _value_in(conf: Any, spec: OptionSpec) -> tuple[Any, str | None]:
    """(value, the file that set it) of one option, or (default, None) if no file did."""
    from oslo_config import cfg

    group = None if spec.group == DEFAULT_GROUP else spec.group
    section = conf if group is None else conf[spec.group]
    try:
        value = section[spec.name]
        location = conf.get_location(spec.name, group)
    except (cfg.Error, ValueError) as exc:
        raise ConfigError(_invalid_value_message(spec, exc), hint="fix the config file") from None
    if location is not None and location.location == cfg.Locations.user:
        return value, location.detail or "config file"
    return value, None


def _read_with_oslo(config_files: Sequence[str], config_dirs: Sequence[str]) -> _FileValues:
    """Read the files with oslo.config, as an OpenStack service would.

    A service's own file (``is_service_config``) sets only the options marked ``shared`` and
    those of ``[oslo_messaging_rabbit]``: how to reach and speak to that service. Its other
    options that share a name with managerctl's (``host``, ``report_interval``,
    ``periodic_fuzzy_delay``) describe the service, not managerctl, and are kept aside. The two
    kinds of file are parsed apart, so that what a service's file sets can never pass for a
    value of managerctl's own file (oslo names one location per option, whichever file set
    it); managerctl's own files win where both set a shared option.
    """
    for path in config_files:
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise ConfigError(f"cannot read config file {path}", hint="check --config-file")
    files = list(config_files) + _files_from_dirs(config_dirs)
    service_files = [path for path in files if is_service_config(path)]
    own_files = [path for path in files if path not in service_files]
    own = _parse_files(own_files) if own_files else None
    service = _parse_files(service_files) if service_files else None
    values = _FileValues()
    values.ignored, values.service_host = [], None
    for spec in OPTIONS:
        value, source = spec.default_value(), None
        if own is not None:
            value, source = _value_in(own, spec)
        if source is None and service is not None:
            service_value, service_source = _value_in(service, spec)
            if service_source is not None:
                if spec.shared or spec.group == RABBIT_GROUP:
                    value, source = service_value, service_source
                else:
                    if spec.name == "host" and spec.group == DEFAULT_GROUP:
                        values.service_host = str(service_value)
                    values.ignored.append(
                        OptionValue(
                            spec.group, spec.name, service_value, service_source, spec.secret
                        )
                    )
        if source is None:
            value = spec.default_value()
        elif value is None and spec.default_factory is not None:
            value = spec.default_factory()
        values[(spec.group, spec.name)] = OptionValue(
            spec.group, spec.name, value, source or "default", spec.secret
        )
    return values


def load_settings(
    config_files: Sequence[str] = (),
    config_dirs: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the effective settings from files (if any), the environment and the defaults."""
    environ = os.environ if environ is None else environ
    files = list(config_files)
    if not files and environ.get(ENV_PREFIX + "CONFIG_FILE"):
        files = [environ[ENV_PREFIX + "CONFIG_FILE"]]
    dirs = list(config_dirs)
    if not dirs and environ.get(ENV_PREFIX + "CONFIG_DIR"):
        dirs = [environ[ENV_PREFIX + "CONFIG_DIR"]]
    ignored: list[OptionValue] = []
    service_host = None
    values: dict[tuple[str, str], OptionValue]
    if files or dirs:
        dir_files = _files_from_dirs(dirs)
        read = _read_with_oslo(files, dirs)
        values, ignored, service_host = read, read.ignored, read.service_host
        files += dir_files
    else:
        values = {
            (spec.group, spec.name): OptionValue(
                spec.group, spec.name, spec.default_value(), "default", spec.secret
            )
            for spec in OPTIONS
        }
    for spec in OPTIONS:
        if spec.group != DEFAULT_GROUP:
            continue
        raw = environ.get(ENV_PREFIX + spec.name.upper())
        if raw is not None and raw != "":
            values[(spec.group, spec.name)] = OptionValue(
                spec.group, spec.name, convert(spec, raw), "environment", spec.secret
            )
    return Settings(values, files, ignored, service_host)


def rabbit_options(settings: Settings) -> dict[str, Any]:
    """The ``[oslo_messaging_rabbit]`` options plus the DEFAULT ones the transport needs."""
    options = {
        spec.name: settings.get(spec.name, spec.group)
        for spec in OPTIONS
        if spec.group == RABBIT_GROUP
    }
    options["control_exchange"] = settings.control_exchange
    options["connect_timeout"] = settings.connect_timeout
    return options
