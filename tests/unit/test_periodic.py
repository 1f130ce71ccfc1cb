"""Tests for manager_cli.periodic: scheduling, collection, records and on-demand runs."""

from __future__ import annotations

import json
import logging

import pytest

from manager_cli.errors import EXIT_USAGE, UnknownNameError
from manager_cli.periodic import (
    DEFAULT_INTERVAL,
    HISTORY_LIMIT,
    PeriodicTasks,
    TaskRun,
    TaskSpec,
    periodic_task,
    task_specs,
)

CONTEXT = {"request_id": "req-1"}


class FakeClock:
    """A monotonic clock that only moves when a test says so."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder(PeriodicTasks):
    """Test base: remembers which task methods ran, with which context."""

    def __init__(self, clock: FakeClock, **kwargs) -> None:
        kwargs.setdefault("random", lambda: 0.0)
        super().__init__(clock=clock, **kwargs)
        self.calls: list[str] = []


def make(cls, now: float = 0.0, **kwargs):
    clock = FakeClock(now)
    return cls(clock, **kwargs), clock


class Every10(Recorder):
    @periodic_task(spacing=10)
    def tick(self, context):
        self.calls.append("tick")


# --- the decorator -------------------------------------------------------------------------------


def test_decorator_bare_empty_parens_and_options_return_the_same_function():
    def bare(self, context): ...

    def parens(self, context): ...

    def options(self, context): ...

    assert periodic_task(bare) is bare
    assert periodic_task()(parens) is parens
    assert periodic_task(spacing=5, name="opt", run_immediately=True)(options) is options
    assert bare._periodic_task and parens._periodic_task and options._periodic_task
    assert (bare._periodic_name, bare._periodic_spacing) == ("bare", 0)
    assert (options._periodic_name, options._periodic_spacing) == ("opt", 5)
    assert options._periodic_immediate is True


def test_unknown_decorator_option_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="ticks_between_runs"):
        periodic_task(spacing=1, ticks_between_runs=3)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [((10,), {}, "keywords"), ((), {"spacing": "10"}, "spacing"), ((), {"name": ""}, "name")],
)
def test_bad_decorator_arguments_are_type_errors(args, kwargs, match):
    with pytest.raises(TypeError, match=match):
        periodic_task(*args, **kwargs)


# --- collection ----------------------------------------------------------------------------------


def test_spacing_zero_means_the_default_interval():
    class Default(Recorder):
        @periodic_task
        def bare(self, context):
            self.calls.append("bare")

    assert task_specs(Default) == (TaskSpec("bare", "bare", DEFAULT_INTERVAL),)
    mgr, clock = make(Default)
    clock.advance(59.9)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == []
    clock.advance(0.1)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["bare"]


def test_disabled_and_negative_spacing_tasks_are_left_out_and_logged(caplog):
    with caplog.at_level(logging.DEBUG, logger="manager_cli.periodic"):

        class Some(Recorder):
            @periodic_task(enabled=False)
            def off(self, context):
                self.calls.append("off")

            @periodic_task(spacing=-1)
            def negative(self, context):
                self.calls.append("negative")

            @periodic_task(run_immediately=True)
            def on(self, context):
                self.calls.append("on")

    assert [spec.name for spec in task_specs(Some)] == ["on"]
    assert "off because it is disabled" in caplog.text
    assert "negative because its spacing is negative" in caplog.text
    mgr, _ = make(Some)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["on"]
    with pytest.raises(UnknownNameError, match="'off' is disabled"):
        mgr.run_task_now(CONTEXT, "off")


def test_inherited_tasks_are_collected_and_an_override_runs_once():
    class Base(Recorder):
        @periodic_task(run_immediately=True)
        def first(self, context):
            self.calls.append("base.first")

        @periodic_task(run_immediately=True)
        def second(self, context):
            self.calls.append("base.second")

    class Child(Base):
        @periodic_task(spacing=30, run_immediately=True)
        def second(self, context):
            self.calls.append("child.second")

        @periodic_task(run_immediately=True)
        def third(self, context):
            self.calls.append("child.third")

    specs = task_specs(Child)
    assert [spec.name for spec in specs] == ["first", "second", "third"]
    assert specs[1].spacing == 30
    assert [spec.name for spec in task_specs(Base)] == ["first", "second"]
    mgr, _ = make(Child)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["base.first", "child.second", "child.third"]


def test_an_override_can_disable_or_undecorate_an_inherited_task():
    class Base(Recorder):
        @periodic_task
        def a(self, context): ...

        @periodic_task
        def b(self, context): ...

        @periodic_task
        def c(self, context): ...

    class Child(Base):
        @periodic_task(enabled=False)
        def a(self, context): ...

        def b(self, context): ...

    assert [spec.name for spec in task_specs(Child)] == ["c"]


def test_two_methods_with_one_task_name_fail_at_class_creation():
    with pytest.raises(ValueError, match="'dup' is used by both one\\(\\) and two\\(\\)"):

        class Clash(Recorder):
            @periodic_task(name="dup")
            def one(self, context): ...

            @periodic_task(name="dup")
            def two(self, context): ...


def test_task_specs_rejects_a_class_that_is_not_periodic():
    with pytest.raises(TypeError):
        task_specs(dict)


# --- scheduling ----------------------------------------------------------------------------------


def test_task_is_not_due_before_its_spacing_and_due_at_it():
    mgr, clock = make(Every10)
    clock.advance(9.5)
    assert mgr.run_periodic_tasks(CONTEXT) == pytest.approx(0.5)
    assert mgr.calls == []
    clock.advance(0.5)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["tick"]


def test_run_immediately_runs_on_the_first_pass_and_then_every_spacing():
    class Immediate(Recorder):
        @periodic_task(spacing=10, run_immediately=True)
        def now(self, context):
            self.calls.append("now")

    mgr, clock = make(Immediate, now=3)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["now"]
    # The first run's boundary is the time it ran: next due at 13.
    assert mgr.periodic_task_info()[0]["next_due_in"] == 10
    clock.advance(9)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["now"]
    clock.advance(1)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["now", "now"]


def test_the_schedule_starts_when_the_instance_is_created_not_at_import():
    mgr, clock = make(Every10, now=1000)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == []
    clock.advance(10)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["tick"]


def test_last_run_times_belong_to_each_instance():
    one, clock = make(Every10)
    clock.advance(7)
    other = Every10(clock)
    clock.advance(3)
    one.run_periodic_tasks(CONTEXT)
    other.run_periodic_tasks(CONTEXT)
    assert (one.calls, other.calls) == (["tick"], [])
    clock.advance(7)
    one.run_periodic_tasks(CONTEXT)
    other.run_periodic_tasks(CONTEXT)
    assert (one.calls, other.calls) == (["tick"], ["tick"])
    assert one.periodic_task_info()[0]["next_due_in"] == 3
    assert other.periodic_task_info()[0]["next_due_in"] == 10


def test_idle_time_is_capped_at_the_default_interval():
    class Slow(Recorder):
        @periodic_task(spacing=600, run_immediately=True)
        def slow(self, context): ...

    mgr, _ = make(Slow)
    assert mgr.run_periodic_tasks(CONTEXT) == DEFAULT_INTERVAL


def test_idle_time_is_the_remaining_time_of_the_soonest_task():
    class Two(Recorder):
        @periodic_task(spacing=30)
        def thirty(self, context): ...

        @periodic_task(spacing=45)
        def forty_five(self, context): ...

    mgr, clock = make(Two)
    clock.advance(25)
    assert mgr.run_periodic_tasks(CONTEXT) == pytest.approx(5)


def test_idle_after_a_run_is_the_spacing_even_when_the_grid_is_nearer():
    # oslo.service's rule, kept: a task that just ran contributes its spacing, not the time to
    # its next boundary.
    mgr, clock = make(Every10)
    clock.advance(23)
    assert mgr.run_periodic_tasks(CONTEXT) == 10
    assert mgr.periodic_task_info()[0]["next_due_in"] == pytest.approx(7)


def test_the_boundary_keeps_the_task_on_its_grid():
    mgr, clock = make(Every10)
    clock.advance(23)
    mgr.run_periodic_tasks(CONTEXT)
    # last run moved to 20 (not 23): next due at 30.
    clock.advance(6.9)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["tick"]
    clock.advance(0.1)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["tick", "tick"]


def test_jitter_is_under_five_percent_of_the_spacing():
    class Hundred(Recorder):
        @periodic_task(spacing=100)
        def hundred(self, context): ...

    mgr, clock = make(Hundred, random=lambda: 0.999)
    clock.advance(100)
    mgr.run_periodic_tasks(CONTEXT)
    jitter = mgr.periodic_task_info()[0]["next_due_in"] - 100
    assert 0 <= jitter < 5
    assert jitter == 4  # int(100 * 0.999 / 20)


def test_spacings_under_twenty_seconds_get_no_jitter():
    mgr, clock = make(Every10, random=lambda: 0.999)
    clock.advance(10)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.periodic_task_info()[0]["next_due_in"] == 10


# --- external tasks ------------------------------------------------------------------------------


class External(Recorder):
    @periodic_task(spacing=5, run_immediately=True, external_process_ok=True)
    def outside(self, context):
        self.calls.append("outside")

    @periodic_task(spacing=20, run_immediately=True)
    def inside(self, context):
        self.calls.append("inside")


def test_external_tasks_run_by_default():
    mgr, _ = make(External)
    assert mgr.run_periodic_tasks(CONTEXT) == 5
    assert mgr.calls == ["outside", "inside"]


def test_external_tasks_are_skipped_with_a_reason_when_not_allowed():
    mgr, _ = make(External, run_external_periodic_tasks=False)
    # The skipped task's spacing does not shorten the idle time.
    assert mgr.run_periodic_tasks(CONTEXT) == 20
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["inside"]
    record = mgr.last_run_record("outside")
    assert record.outcome == "skipped" and "run_external_periodic_tasks" in record.reason
    # One skip record, not one per pass.
    assert [run.task for run in mgr.run_history()] == ["outside", "inside"]
    info = {item["name"]: item for item in mgr.periodic_task_info()}
    assert info["outside"]["next_due_in"] is None and info["outside"]["last_run"] is None
    skipped = mgr.run_task_now(CONTEXT, "outside")
    assert skipped.outcome == "skipped" and skipped.on_demand
    assert mgr.calls == ["inside"]


# --- errors --------------------------------------------------------------------------------------


class Failing(Recorder):
    @periodic_task(spacing=10, run_immediately=True)
    def broken(self, context):
        self.calls.append("broken")
        raise ValueError("boom")

    @periodic_task(spacing=10, run_immediately=True)
    def fine(self, context):
        self.calls.append("fine")


def test_a_failing_task_does_not_stop_the_others(caplog):
    mgr, _ = make(Failing)
    with caplog.at_level(logging.ERROR, logger="manager_cli.periodic"):
        mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["broken", "fine"]
    assert "Error during Failing.broken" in caplog.text
    assert mgr.last_run_record("broken").outcome == "failed"
    assert mgr.last_run_record("broken").error == "ValueError: boom"
    assert mgr.last_run_record("fine").outcome == "ok"


def test_raise_on_error_re_raises_after_recording():
    mgr, _ = make(Failing)
    with pytest.raises(ValueError, match="boom"):
        mgr.run_periodic_tasks(CONTEXT, raise_on_error=True)
    assert mgr.calls == ["broken"]
    assert mgr.last_run_record("broken").error == "ValueError: boom"


def test_a_failed_run_counts_as_a_run():
    mgr, clock = make(Failing)
    mgr.run_periodic_tasks(CONTEXT)
    clock.advance(5)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls.count("broken") == 1
    clock.advance(5)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls.count("broken") == 2


def test_keyboard_interrupt_is_recorded_but_never_swallowed():
    class Interrupted(Recorder):
        @periodic_task(run_immediately=True)
        def stop(self, context):
            raise KeyboardInterrupt

    mgr, _ = make(Interrupted)
    with pytest.raises(KeyboardInterrupt):
        mgr.run_periodic_tasks(CONTEXT)
    assert mgr.last_run_record("stop").error == "KeyboardInterrupt"


# --- records -------------------------------------------------------------------------------------


def test_records_capture_start_duration_and_outcome():
    class Timed(Recorder):
        @periodic_task(spacing=10, run_immediately=True)
        def slow(self, context):
            assert context is CONTEXT
            self._clock.advance(2.5)

    wall = iter([1_700_000_000.0, 1_700_000_100.0])
    mgr, _ = make(Timed, wall_clock=lambda: next(wall))
    assert mgr.last_run_record("slow") is None
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.run_history() == [TaskRun("slow", 1_700_000_000.0, 2.5, "ok")]
    assert mgr.periodic_task_info()[0]["last_run"] == 1_700_000_000.0


def test_history_is_bounded_and_keeps_the_newest():
    mgr, clock = make(Every10)
    for _ in range(HISTORY_LIMIT + 5):
        clock.advance(10)
        mgr.run_periodic_tasks(CONTEXT)
    history = mgr.run_history()
    assert len(mgr.calls) == HISTORY_LIMIT + 5
    assert len(history) == HISTORY_LIMIT


def test_periodic_task_info_is_plain_json():
    mgr, clock = make(Failing)
    mgr.run_periodic_tasks(CONTEXT)
    clock.advance(4)
    info = json.loads(json.dumps(mgr.periodic_task_info()))
    assert info[0] == {
        "name": "broken",
        "spacing": 10.0,
        "run_immediately": True,
        "external_process_ok": False,
        "last_run": info[0]["last_run"],
        "last_outcome": "failed",
        "last_error": "ValueError: boom",
        "next_due_in": 6.0,
    }
    assert isinstance(info[0]["last_run"], float)
    fresh, _ = make(Failing)
    assert [item["next_due_in"] for item in fresh.periodic_task_info()] == [0.0, 0.0]
    assert fresh.periodic_task_info()[0]["last_outcome"] is None


# --- on demand -----------------------------------------------------------------------------------


def test_run_task_now_does_not_shift_the_schedule():
    mgr, clock = make(Every10)
    clock.advance(5)
    record = mgr.run_task_now(CONTEXT, "tick")
    assert record.outcome == "ok" and record.on_demand
    assert mgr.periodic_task_info()[0]["next_due_in"] == 5
    clock.advance(5)
    mgr.run_periodic_tasks(CONTEXT)
    assert mgr.calls == ["tick", "tick"]
    assert [run.on_demand for run in mgr.run_history()] == [True, False]


def test_run_task_now_captures_errors_unless_asked_to_raise():
    mgr, _ = make(Failing)
    record = mgr.run_task_now(CONTEXT, "broken")
    assert (record.outcome, record.error) == ("failed", "ValueError: boom")
    with pytest.raises(ValueError):
        mgr.run_task_now(CONTEXT, "broken", raise_on_error=True)


def test_unknown_task_name_lists_the_known_ones():
    mgr, _ = make(Failing)
    with pytest.raises(UnknownNameError) as excinfo:
        mgr.run_task_now(CONTEXT, "nope")
    assert excinfo.value.exit_code == EXIT_USAGE
    assert "'nope'" in str(excinfo.value) and "broken, fine" in str(excinfo.value)
    with pytest.raises(UnknownNameError):
        mgr.last_run_record("nope")


def test_run_tasks_now_runs_all_or_the_named_ones_and_captures_errors():
    mgr, _ = make(Failing)
    records = mgr.run_tasks_now(CONTEXT)
    assert [(r.task, r.outcome) for r in records] == [("broken", "failed"), ("fine", "ok")]
    assert [r.task for r in mgr.run_tasks_now(CONTEXT, ["fine", "fine"])] == ["fine"]
    assert [r.task for r in mgr.run_tasks_now(CONTEXT, "fine")] == ["fine"]
    calls = list(mgr.calls)
    with pytest.raises(UnknownNameError):
        mgr.run_tasks_now(CONTEXT, ["fine", "nope"])
    assert mgr.calls == calls
