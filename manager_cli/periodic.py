"""Periodic tasks: oslo.service's ``periodic_task`` semantics, per instance and observable.

A method decorated with :func:`periodic_task` is collected when its class is created;
:meth:`PeriodicTasks.run_periodic_tasks` runs the tasks that are due and returns how long the
caller may sleep. Beyond oslo.service, every run leaves a :class:`TaskRun` record and a task can be
run on demand without shifting its schedule. Stdlib only: the clock and the jitter source are
injectable, so tests need no sleeping.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random as _random
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar, overload

from manager_cli.errors import UnknownNameError

__all__ = [
    "DEFAULT_INTERVAL",
    "HISTORY_LIMIT",
    "PeriodicTasks",
    "TaskRun",
    "TaskSpec",
    "periodic_task",
    "task_specs",
]

LOG = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0
HISTORY_LIMIT = 100

Outcome = Literal["ok", "failed", "skipped"]
_F = TypeVar("_F", bound=Callable[..., Any])

_EXTERNAL_SKIP_REASON = "external task; run_external_periodic_tasks is false in this process"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One collected periodic task of a class: which method to call and how often."""

    name: str
    method_name: str
    spacing: float
    run_immediately: bool = False
    external_process_ok: bool = False
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class TaskRun:
    """The record of one run, or deliberate skip, of a periodic task."""

    task: str
    started: float
    duration: float
    outcome: Outcome
    error: str | None = None
    reason: str | None = None
    on_demand: bool = False


@overload
def periodic_task(func: _F, /) -> _F: ...


@overload
def periodic_task(
    *,
    spacing: float = 0,
    run_immediately: bool = False,
    enabled: bool = True,
    name: str | None = None,
    external_process_ok: bool = False,
) -> Callable[[_F], _F]: ...


def periodic_task(
    func: Callable[..., Any] | None = None,
    /,
    *,
    spacing: float = 0,
    run_immediately: bool = False,
    enabled: bool = True,
    name: str | None = None,
    external_process_ok: bool = False,
) -> Any:
    """Mark a method ``task(self, context)`` as periodic; usable bare, with ``()`` or options.

    ``spacing`` is the seconds between runs (0: DEFAULT_INTERVAL; negative: disabled). Options are
    keyword-only, so an unknown one raises TypeError naming it (oslo.service ignored them).
    """
    if func is not None and not callable(func):
        raise TypeError(
            f"periodic_task() takes its options as keywords (spacing={func!r}), not positionally"
        )
    if isinstance(spacing, bool) or not isinstance(spacing, (int, float)):
        raise TypeError(f"periodic_task() option spacing must be a number, not {spacing!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"periodic_task() option name must be a non-empty string, not {name!r}")

    def decorate(f: _F) -> _F:
        # oslo.service's attribute names, so a method marked by oslo's decorator is collected too.
        f._periodic_task = True  # type: ignore[attr-defined]
        f._periodic_spacing = spacing  # type: ignore[attr-defined]
        f._periodic_immediate = run_immediately  # type: ignore[attr-defined]
        f._periodic_enabled = enabled  # type: ignore[attr-defined]
        f._periodic_name = name or f.__name__  # type: ignore[attr-defined]
        f._periodic_external_ok = external_process_ok  # type: ignore[attr-defined]
        return f

    return decorate if func is None else decorate(func)


def _collect(cls: type) -> tuple[tuple[TaskSpec, ...], tuple[str, ...]]:
    """Return the enabled tasks of ``cls`` in order, and the names of the disabled ones."""
    # oslo.service appended a subclass's override next to the base's entry and called the stored
    # function directly, so the base's function ran and the override was skipped as "not due".
    # Here a method name holds one slot (where it was first defined, base classes first) and what
    # runs is what attribute lookup on the class finds.
    method_names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if getattr(value, "_periodic_task", False):
                method_names.setdefault(attr, None)

    specs: dict[str, TaskSpec] = {}
    disabled: list[str] = []
    for attr in method_names:
        func = next(vars(klass)[attr] for klass in cls.__mro__ if attr in vars(klass))
        if not getattr(func, "_periodic_task", False):
            LOG.debug(
                "%s.%s overrides a periodic task undecorated: not periodic", cls.__name__, attr
            )
            continue
        name, spacing = func._periodic_name, float(func._periodic_spacing)
        if spacing < 0 or not func._periodic_enabled:
            why = "its spacing is negative" if spacing < 0 else "it is disabled"
            LOG.debug("Skipping periodic task %s.%s because %s", cls.__name__, name, why)
            disabled.append(name)
            continue
        if name in specs:
            raise ValueError(
                f"{cls.__qualname__}: periodic task name {name!r} is used by both "
                f"{specs[name].method_name}() and {attr}()"
            )
        specs[name] = TaskSpec(
            name=name,
            method_name=attr,
            # 0 means the default interval, so an unconfigured task does not run on every pass.
            spacing=spacing or DEFAULT_INTERVAL,
            run_immediately=bool(func._periodic_immediate),
            external_process_ok=bool(func._periodic_external_ok),
        )
    return tuple(specs.values()), tuple(disabled)


def task_specs(cls: type) -> tuple[TaskSpec, ...]:
    """Return the enabled periodic tasks of a PeriodicTasks subclass, without instantiating it."""
    if not (isinstance(cls, type) and issubclass(cls, PeriodicTasks)):
        raise TypeError(f"{cls!r} is not a PeriodicTasks subclass")
    return cls._periodic_tasks


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class PeriodicTasks:
    """Base for classes with ``@periodic_task`` methods: runs the due ones and records each run."""

    _periodic_tasks: tuple[TaskSpec, ...] = ()
    _periodic_disabled: tuple[str, ...] = ()
    # Told of every TaskRun as it is recorded (service metrics); must not raise or block.
    on_task_run: Callable[[TaskRun], None] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._periodic_tasks, cls._periodic_disabled = _collect(cls)

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        wall_clock: Callable[[], float] = time.time,
        run_external_periodic_tasks: bool = True,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._random = random
        self._wall_clock = wall_clock
        # Public so a configuration reload can change it on a running instance.
        self.run_external_periodic_tasks = run_external_periodic_tasks
        # oslo.service stamps a task's first "last run" when the decorator runs, at import, so a
        # manager started long after import runs every task on its first pass. Here each task's
        # grid starts when the instance is created; a run_immediately task has no last run yet.
        start = clock()
        self._last_run: dict[str, float | None] = {
            spec.name: None if spec.run_immediately else start for spec in self._periodic_tasks
        }
        self._last_started: dict[str, float] = {}
        self._last_records: dict[str, TaskRun] = {}
        self._history: collections.deque[TaskRun] = collections.deque(maxlen=HISTORY_LIMIT)

    def run_periodic_tasks(self, context: Any, raise_on_error: bool = False) -> float:
        """Run every task that is due, in order; return the seconds until one may be due."""
        idle = DEFAULT_INTERVAL
        for spec in self._periodic_tasks:
            if self._external_blocked(spec):
                self._record_skip(spec, on_demand=False)
                continue
            idle = min(idle, spec.spacing)
            now = self._clock()
            last_run = self._last_run[spec.name]
            if last_run is not None:
                remaining = last_run + spec.spacing - now
                if remaining > 0:
                    idle = min(idle, remaining)
                    continue
            # Advanced before the run, so a task that raises is not retried on every pass: a
            # failed run counts as a run.
            self._last_run[spec.name] = self._nearest_boundary(last_run, spec.spacing, now)
            self._execute(spec, context, raise_on_error=raise_on_error, on_demand=False)
        return idle

    def run_task_now(self, context: Any, name: str, raise_on_error: bool = False) -> TaskRun:
        """Run one task on demand; its schedule (last run) is left as it was."""
        spec = self._lookup(name)
        if self._external_blocked(spec):
            return self._record_skip(spec, on_demand=True)
        return self._execute(spec, context, raise_on_error=raise_on_error, on_demand=True)

    def run_tasks_now(self, context: Any, names: Iterable[str] | None = None) -> list[TaskRun]:
        """Run the named tasks (default: all) on demand; errors end up in the records."""
        if isinstance(names, str):
            names = [names]
        # Every name is checked before anything runs, so a typo does not leave a half-done batch.
        specs = (
            self._periodic_tasks
            if names is None
            else [self._lookup(name) for name in dict.fromkeys(names)]
        )
        return [self.run_task_now(context, spec.name) for spec in specs]

    def last_run_record(self, name: str) -> TaskRun | None:
        """Return the latest record of a task, or None if it has none yet."""
        return self._last_records.get(self._lookup(name).name)

    def run_history(self) -> list[TaskRun]:
        """Return the latest records of all tasks, oldest first (at most HISTORY_LIMIT)."""
        return list(self._history)

    def periodic_task_info(self) -> list[dict[str, Any]]:
        """Describe each task and its schedule as JSON-able dicts with snake_case keys."""
        now = self._clock()
        info = []
        for spec in self._periodic_tasks:
            record = self._last_records.get(spec.name)
            info.append(
                {
                    "name": spec.name,
                    "spacing": spec.spacing,
                    "run_immediately": spec.run_immediately,
                    "external_process_ok": spec.external_process_ok,
                    "last_run": self._last_started.get(spec.name),
                    "last_outcome": record.outcome if record else None,
                    "last_error": record.error if record else None,
                    "next_due_in": self._next_due_in(spec, now),
                }
            )
        return info

    def _next_due_in(self, spec: TaskSpec, now: float) -> float | None:
        if self._external_blocked(spec):
            return None
        last_run = self._last_run[spec.name]
        return 0.0 if last_run is None else max(0.0, last_run + spec.spacing - now)

    def _nearest_boundary(self, last_run: float | None, spacing: float, now: float) -> float:
        # Keeps the task on its own grid (a late pass does not push later runs back) plus a jitter
        # of 0 to just under 5% of the spacing so hosts do not synchronise. int() as in
        # oslo.service: spacings under 20 s get no jitter.
        if last_run is None:
            return now
        return now - ((now - last_run) % spacing) + int(spacing * self._random() / 20)

    def _external_blocked(self, spec: TaskSpec) -> bool:
        return spec.external_process_ok and not self.run_external_periodic_tasks

    def _execute(
        self, spec: TaskSpec, context: Any, *, raise_on_error: bool, on_demand: bool
    ) -> TaskRun:
        full_name = f"{type(self).__name__}.{spec.name}"
        LOG.debug("Running periodic task %s", full_name)
        started, t0 = self._wall_clock(), self._clock()
        self._last_started[spec.name] = started
        try:
            getattr(self, spec.method_name)(context)
        except BaseException as exc:
            duration = self._clock() - t0
            failed = TaskRun(
                spec.name, started, duration, "failed", _describe(exc), None, on_demand
            )
            self._record(failed)
            # oslo.service swallows BaseException; Ctrl-C and SystemExit are recorded but must
            # still stop the process.
            if raise_on_error or not isinstance(exc, Exception):
                raise
            LOG.exception("Error during %s", full_name)
            return failed
        duration = self._clock() - t0
        return self._record(TaskRun(spec.name, started, duration, "ok", on_demand=on_demand))

    def _record_skip(self, spec: TaskSpec, *, on_demand: bool) -> TaskRun:
        previous = self._last_records.get(spec.name)
        # A timer pass skips a blocked external task every time; one record says it, not one a pass.
        if not on_demand and previous is not None and previous.reason == _EXTERNAL_SKIP_REASON:
            return previous
        reason, started = _EXTERNAL_SKIP_REASON, self._wall_clock()
        return self._record(TaskRun(spec.name, started, 0.0, "skipped", None, reason, on_demand))

    def _record(self, record: TaskRun) -> TaskRun:
        self._last_records[record.task] = record
        self._history.append(record)
        if self.on_task_run is not None:
            try:
                self.on_task_run(record)
            except Exception:
                LOG.exception("the on_task_run observer raised")
        return record

    def _lookup(self, name: str) -> TaskSpec:
        for spec in self._periodic_tasks:
            if spec.name == name:
                return spec
        known = ", ".join(spec.name for spec in self._periodic_tasks) or "none"
        if name in self._periodic_disabled:
            raise UnknownNameError(f"periodic task {name!r} is disabled", hint=f"enabled: {known}")
        raise UnknownNameError(f"unknown periodic task {name!r}", hint=f"known tasks: {known}")
