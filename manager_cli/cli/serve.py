"""``managerctl serve NAME``: run a manager as a long-running service."""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING, Any

import click

from .common import app_state, load_manager, manager_name_argument
from .complete import complete_hosts, complete_topics

if TYPE_CHECKING:
    from ..config import Settings

# The OpenStack service log line: time, pid, level, logger, [request context], message.
LOG_FORMAT = "%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s [-] %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

LOG = logging.getLogger(__name__)


def configure_logging(debug: bool) -> None:
    """OpenStack-shaped log lines on stderr: INFO, or DEBUG with --debug."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format=LOG_FORMAT,
        datefmt=LOG_DATE_FORMAT,
        force=True,  # the root group may have set its own format for --debug
    )
    # pika narrates every connection step at INFO and logs each failed attempt as an ERROR with
    # a traceback; the transport maps those failures and the service logs them in one line.
    logging.getLogger("pika").setLevel(logging.INFO if debug else logging.CRITICAL)


@click.command("serve")
@manager_name_argument
@click.option(
    "--host",
    metavar="HOST",
    help="Serve as this host (default: the host option).",
    shell_complete=complete_hosts,
)
@click.option(
    "--topic",
    metavar="TOPIC",
    help="Consume this topic (default: the manager's).",
    shell_complete=complete_topics,
)
@click.option(
    "--scheduler-topic",
    metavar="TOPIC",
    help="The scheduler topic capabilities go to, and whose fanout a collector joins (default: "
    "the scheduler_topic option, scheduler; cinder's family: cinder-scheduler).",
)
@click.option(
    "--graceful-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds in-flight calls may take to finish on SIGTERM or SIGINT.",
)
@click.option(
    "--metrics-address",
    metavar="HOST:PORT",
    help="Expose Prometheus metrics at http://HOST:PORT/metrics (default: [managerctl] "
    "metrics_listen; none when unset).",
)
def serve(
    name: str,
    host: str | None,
    topic: str | None,
    scheduler_topic: str | None,
    graceful_timeout: float,
    metrics_address: str | None,
) -> None:
    """Serve manager NAME over RPC until SIGTERM or SIGINT (then exit 0).

    Runs init_host, announces the service record, runs pre_start_hook, consumes TOPIC,
    TOPIC.HOST and the TOPIC fanout, runs post_start_hook, then runs the periodic tasks on
    their timer (periodic_fuzzy_delay, periodic_interval_max) and reports its state to
    managerctl's own topic (where a collector listens) every report_interval seconds. It also answers the managerctl control namespace
    (periodic list --host, run-periodic --host).

    On SIGTERM or SIGINT it stops consuming and gives in-flight calls --graceful-timeout
    seconds to finish; a second signal exits at once (130). SIGHUP re-reads the config files.
    A lost broker connection is re-established with backoff; periodic tasks keep running.

    With --metrics-address (or [managerctl] metrics_listen) it serves Prometheus metrics:
    RPC requests by method and outcome, their latency, in flight, rejected and poison
    messages, periodic task runs, failures, duration and last success, broker connection
    state and reconnects, capabilities published. Without it nothing is collected.

    \b
    Examples:
      managerctl serve hostinfo --host web01
      managerctl --config-file cinder.conf serve collector --scheduler-topic cinder-scheduler
      MANAGERCTL_PERIODIC_FUZZY_DELAY=0 managerctl --debug serve hostinfo
      managerctl serve hostinfo --metrics-address 127.0.0.1:9464
    """
    from ..errors import EXIT_INTERRUPTED
    from ..service import Service

    state = app_state()
    configure_logging(state.debug)
    overrides = {"scheduler_topic": scheduler_topic}
    # The flag is an option override like --transport-url: everything built from this
    # invocation's settings (the manager, the service) sees it.
    state._settings = state.settings.with_overrides(overrides)
    default_topic, manager = load_manager(name, host)
    metrics = _start_metrics(metrics_address, state.settings)
    service = Service(
        manager,
        topic=topic or default_topic,
        settings=state.settings,
        graceful_timeout=graceful_timeout,
        metrics=metrics,
    )
    caught: list[int] = []

    def request_stop(signum: int, _frame: Any) -> None:
        caught.append(signum)
        if len(caught) > 1:
            # The operator does not want to wait: leave without the graceful stop.
            os.write(2, b"managerctl: second signal, exiting without waiting\n")
            os._exit(EXIT_INTERRUPTED)
        LOG.info("Caught %s, stopping", signal.Signals(signum).name)
        service.request_stop()

    def reload(_signum: int, _frame: Any) -> None:
        from ..config import load_settings

        LOG.info("Caught SIGHUP, reloading the configuration")
        try:
            settings = load_settings(state.config_files, state.config_dirs)
            service.reload(
                settings.with_overrides({"transport_url": state.transport_url, **overrides})
            )
        except Exception as exc:  # a bad file must not kill a running service
            LOG.error("reload failed, keeping the old configuration: %s", exc)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, reload)
    try:
        service.start()
        service.wait()
    finally:
        service.stop()
        if metrics is not None:
            metrics.close()


def _start_metrics(address: str | None, settings: Settings) -> Any:
    """The service's metrics, exposed over HTTP, or None when not asked for."""
    from ..config import MANAGERCTL_GROUP

    what = "--metrics-address"
    if address is None:
        address = settings.get("metrics_listen", MANAGERCTL_GROUP)
        what = "[managerctl] metrics_listen"
    if not address:
        return None
    # Imported only here: prometheus_client costs nothing to a service without metrics.
    from ..errors import BadInputError, ConfigError
    from ..metrics import ServiceMetrics, parse_listen_address

    try:
        listen_host, port = parse_listen_address(address, what=what)
    except BadInputError as exc:
        if what == "--metrics-address":
            raise
        raise ConfigError(exc.message, hint=exc.hint) from None
    metrics = ServiceMetrics()
    bound_host, bound_port = metrics.serve(listen_host, port)
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    LOG.info("Prometheus metrics at http://%s:%d/metrics", shown, bound_port)
    return metrics
