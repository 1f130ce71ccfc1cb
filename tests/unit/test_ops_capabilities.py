"""ops.capabilities on the in-memory broker: whom to ask, asking, and what comes back."""

from __future__ import annotations

import pytest

from manager_cli import SchedulerDependentManager
from manager_cli.errors import UnavailableError
from manager_cli.ops import capabilities as live
from manager_cli.testing import memory_settings, served


class Disks(SchedulerDependentManager):
    RPC_API_VERSION = "1.0"

    def publish_service_capabilities(self, context):  # what a publish request runs
        self.update_service_capabilities({"free_gb": 42, "host_of": self.host})
        super().publish_service_capabilities(context)


def test_live_records_asks_the_topic_and_returns_what_it_published() -> None:
    settings = memory_settings(scheduler_topic="disk-scheduler")
    with served(
        Disks(host="d1", service_name="disks", settings=settings), topic="disks", settings=settings
    ):
        records = live.live_records(
            settings, None, "disk-scheduler", ("disks",), version=None, wait=0.5
        )
    assert [(r.service, r.host) for r in records] == [("disks", "d1")]
    assert records[0].capabilities == [{"free_gb": 42, "host_of": "d1"}]


def test_live_records_names_whom_it_asked_when_nobody_answers() -> None:
    settings = memory_settings()
    with pytest.raises(UnavailableError, match=r"asked: nobody-home"):
        live.live_records(settings, None, "scheduler", ("nobody-home",), version=None, wait=0.1)


def test_publish_says_which_topics_had_a_listener() -> None:
    settings = memory_settings()
    with served(
        Disks(host="d1", service_name="disks", settings=settings), topic="disks", settings=settings
    ):
        targets = live.publish_targets(settings, None, "scheduler", ("disks", "absent:2.0"))
        rows = live.publish(settings, targets)
    assert [(r["topic"], r["version"], r["listeners"]) for r in rows] == [
        ("disks", "1.0", "yes"),  # managerctl's own publishers speak 1.0
        ("absent", "2.0", "none"),
    ]


def test_scheduler_topic_prefers_the_flag_then_the_option() -> None:
    settings = memory_settings(scheduler_topic="cinder-scheduler")
    assert live.scheduler_topic(settings) == "cinder-scheduler"
    assert live.scheduler_topic(settings, "other") == "other"
