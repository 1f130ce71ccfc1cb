"""Prometheus metrics of a served manager (``serve --metrics-address``, ``[managerctl]
metrics_listen``), with the standard ``prometheus_client`` library.

Nothing here runs unless metrics are enabled: the service imports this module only then, and
the RPC server, the periodic runner and the publisher carry one ``None`` observer slot each, so
a service without metrics pays one attribute test on its rare events and nothing per request
(requests are observed by wrapping the dispatcher, not inside the server's hot path).

Each service gets a registry of its own (not prometheus_client's global one), so two services
in one process, or tests, never mix their counts. Label values are bounded: a method the
dispatcher does not know is counted as ``(unknown)``, so a caller cannot grow the series.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

from .errors import BadInputError, ConfigError
from .rpc.dispatcher import DispatchError, NoSuchMethod, UnsupportedVersion

LOG = logging.getLogger(__name__)

PREFIX = "managerctl"
UNKNOWN_METHOD = "(unknown)"
# RPC methods are mostly fast; periodic tasks may take minutes.
RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900)
# RPC server events (rpc.server.RPCServer.on_event) -> rejected-message reason.
REJECTED = {
    "rejected_content_type": "content_type",
    "rejected_too_large": "too_large",
    "duplicate": "duplicate",
}


def parse_listen_address(text: str, *, what: str = "--metrics-address") -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` / ``PORT`` (all interfaces) -> (host, port)."""
    value = text.strip()
    host, port_text = "", value
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        port_text = rest[1:] if bracket and rest.startswith(":") else ""
    elif ":" in value:
        host, _, port_text = value.rpartition(":")
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise BadInputError(
            f"{what} {text!r} is not HOST:PORT",
            hint="e.g. 127.0.0.1:9464, [::1]:9464 or :9464 (all interfaces); port 0 picks one",
        )
    return host or "0.0.0.0", int(port_text)


# What a service exposes, one row a metric: (attribute, kind, name after the prefix, help,
# labels, histogram buckets). Counters get prometheus_client's ``_total`` suffix.
METRICS: tuple[tuple[str, type, str, str, tuple[str, ...], tuple[float, ...]], ...] = (
    ("info", Gauge, "service_info", "The served manager (always 1).",
     ("service", "host", "topic", "version"), ()),
    ("rpc_requests", Counter, "rpc_requests", "RPC requests handled, by method and outcome "
     "(ok, error, bad_input, no_such_method, unsupported_version).", ("method", "outcome"), ()),
    ("rpc_duration", Histogram, "rpc_request_duration_seconds",
     "Time to run an RPC request (dispatch to result), by method.", ("method",), RPC_BUCKETS),
    ("rpc_in_flight", Gauge, "rpc_requests_in_flight", "RPC requests running now.", (), ()),
    ("rpc_rejected", Counter, "rpc_rejected_messages", "Messages refused before dispatch, by "
     "reason (content_type, too_large, duplicate).", ("reason",), ()),
    ("rpc_poison", Counter, "rpc_poison_messages",
     "Messages that are not a readable oslo request (rejected without requeue).", (), ()),
    ("task_runs", Counter, "periodic_task_runs",
     "Periodic task runs, by task and outcome (ok, failed, skipped).", ("task", "outcome"), ()),
    ("task_failures", Counter, "periodic_task_failures",
     "Periodic task runs that raised, by task.", ("task",), ()),
    ("task_duration", Histogram, "periodic_task_duration_seconds",
     "Time a periodic task run took, by task.", ("task",), TASK_BUCKETS),
    ("task_last_success", Gauge, "periodic_task_last_success_timestamp_seconds",
     "When the task last ended well (Unix time).", ("task",), ()),
    ("broker_connected", Gauge, "broker_connected",
     "1 while the RPC server holds a broker connection, else 0.", (), ()),
    ("broker_reconnects", Counter, "broker_reconnects",
     "Broker connections re-established after a loss.", (), ()),
    ("broker_connection_losses", Counter, "broker_connection_losses",
     "Broker connections lost while serving.", (), ()),
    ("casts_sent", Counter, "published_messages", "Fanout casts the service sent, by method "
     "(update_service_capabilities is a capabilities publication, report_service_state a "
     "state report) and outcome.", ("method", "outcome"), ()),
    ("capabilities_published", Counter, "capabilities_published",
     "Capabilities publications sent to the scheduler.", (), ()),
)  # fmt: skip


class ServiceMetrics:
    """The metrics of one served manager (see METRICS), and the observers that feed them."""

    info: Gauge
    rpc_requests: Counter
    rpc_duration: Histogram
    rpc_in_flight: Gauge
    rpc_rejected: Counter
    rpc_poison: Counter
    task_runs: Counter
    task_failures: Counter
    task_duration: Histogram
    task_last_success: Gauge
    broker_connected: Gauge
    broker_reconnects: Counter
    broker_connection_losses: Counter
    casts_sent: Counter
    capabilities_published: Counter

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        for attribute, kind, name, documentation, labels, buckets in METRICS:
            extra = {"buckets": buckets} if buckets else {}
            metric = kind(
                f"{PREFIX}_{name}", documentation, labels, registry=self.registry, **extra
            )
            setattr(self, attribute, metric)
        # Series that exist before the first event, so a dashboard sees 0 rather than nothing.
        for reason in REJECTED.values():
            self.rpc_rejected.labels(reason)
        self._server: Any = None
        self._thread: Any = None
        self.address: tuple[str, int] | None = None

    # -- the observers ---------------------------------------------------------------------

    def describe_service(self, service: str, host: str, topic: str, version: str) -> None:
        self.info.labels(service, host, topic, version).set(1)

    def instrument(self, dispatcher: Any) -> InstrumentedDispatcher:
        return InstrumentedDispatcher(dispatcher, self)

    def server_event(self, event: str) -> None:
        """rpc.server.RPCServer.on_event."""
        if event == "connected":
            self.broker_connected.set(1)
        elif event == "reconnected":
            self.broker_connected.set(1)
            self.broker_reconnects.inc()
        elif event == "disconnected":
            self.broker_connected.set(0)
            self.broker_connection_losses.inc()
        elif event == "closed":
            self.broker_connected.set(0)
        elif event == "poison":
            self.rpc_poison.inc()
        elif event in REJECTED:
            self.rpc_rejected.labels(REJECTED[event]).inc()

    def task_run(self, run: Any) -> None:
        """periodic.PeriodicTasks.on_task_run: one TaskRun record."""
        self.task_runs.labels(run.task, run.outcome).inc()
        if run.outcome == "skipped":
            return
        self.task_duration.labels(run.task).observe(run.duration)
        if run.outcome == "failed":
            self.task_failures.labels(run.task).inc()
        else:
            self.task_last_success.labels(run.task).set(run.started + run.duration)

    def cast_sent(self, method: str, ok: bool) -> None:
        """service.BrokerPublisher.on_send."""
        self.casts_sent.labels(method, "ok" if ok else "failed").inc()
        if ok and method == "update_service_capabilities":
            self.capabilities_published.inc()

    # -- exposition ------------------------------------------------------------------------

    def serve(self, host: str, port: int) -> tuple[str, int]:
        """Expose ``/metrics`` over HTTP on (host, port) in a daemon thread; the bound address."""
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot expose metrics on {host}:{port}: {exc.strerror or exc}",
                hint="pick a free port with --metrics-address (or [managerctl] metrics_listen)",
            ) from None
        bound = self._server.server_address
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


class InstrumentedDispatcher:
    """A dispatcher that counts and times what it dispatches (the server is unchanged).

    The labelled children are looked up once per (method, outcome) and kept: ``labels()``
    takes a lock and builds a key on every call, a cost each request would pay.
    """

    def __init__(self, dispatcher: Any, metrics: ServiceMetrics) -> None:
        self._dispatcher = dispatcher
        self._in_flight = metrics.rpc_in_flight
        self._requests = metrics.rpc_requests
        self._duration = metrics.rpc_duration
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dispatcher, name)

    def _record(self, method: str, outcome: str, seconds: float) -> None:
        histogram = self._histograms.get(method)
        if histogram is None:
            histogram = self._histograms[method] = self._duration.labels(method)
        histogram.observe(seconds)
        counter = self._counters.get((method, outcome))
        if counter is None:
            counter = self._counters[(method, outcome)] = self._requests.labels(method, outcome)
        counter.inc()

    def dispatch(self, request: Any) -> Any:
        self._in_flight.inc()
        started = time.perf_counter()
        try:
            result = self._dispatcher.dispatch(request)
        except NoSuchMethod:
            self._record(UNKNOWN_METHOD, "no_such_method", time.perf_counter() - started)
            raise
        except UnsupportedVersion:
            self._record(UNKNOWN_METHOD, "unsupported_version", time.perf_counter() - started)
            raise
        except DispatchError:
            self._record(UNKNOWN_METHOD, "dispatch_error", time.perf_counter() - started)
            raise
        except BadInputError:
            self._record(request.method, "bad_input", time.perf_counter() - started)
            raise
        except BaseException:
            self._record(request.method, "error", time.perf_counter() - started)
            raise
        finally:
            self._in_flight.dec()
        self._record(request.method, "ok", time.perf_counter() - started)
        return result
