"""``managerctl serve NAME``: run a manager as a long-running service."""

from __future__ import annotations

import logging
import signal
from typing import Any

import click

from .common import app_state, load_manager, manager_name_argument
from .complete import complete_hosts, complete_topics

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(process)d %(levelname)s %(name)s [-] %(message)s"


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
    "--graceful-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds in-flight calls may take to finish on SIGTERM.",
)
def serve(name: str, host: str | None, topic: str | None, graceful_timeout: float) -> None:
    """Serve manager NAME over RPC until SIGTERM or SIGINT (then exit 0).

    Consumes TOPIC, TOPIC.HOST and the TOPIC fanout, runs the periodic tasks on their timer,
    and answers the managerctl control namespace. SIGHUP re-reads the config files.
    """
    from ..service import Service

    state = app_state()
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.DEBUG if state.debug else logging.INFO,
            format=LOG_FORMAT,
            datefmt="%Y-%m-%d %H:%M:%S",
        )
        if not state.debug:
            # pika narrates every connection step at INFO; operators want that only with --debug.
            logging.getLogger("pika").setLevel(logging.WARNING)
    default_topic, manager = load_manager(name, host)
    service = Service(
        manager,
        topic=topic or default_topic,
        settings=state.settings,
        graceful_timeout=graceful_timeout,
    )
    stop_requested: list[int] = []

    def request_stop(signum: int, _frame: Any) -> None:
        logging.getLogger(__name__).info("caught %s, stopping", signal.Signals(signum).name)
        stop_requested.append(signum)
        service.request_stop()

    def reload(_signum: int, _frame: Any) -> None:
        from ..config import load_settings

        try:
            settings = load_settings(state.config_files, state.config_dirs)
            service.reload(settings.with_overrides({"transport_url": state.transport_url}))
        except Exception as exc:  # a bad reload must not kill a running service
            logging.getLogger(__name__).error("reload failed, keeping old config: %s", exc)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, reload)
    service.start()
    try:
        service.wait()
    finally:
        service.stop()
