"""``hostinfo``: a real SchedulerDependentManager that reports facts about this host.

Its periodic tasks gather the CPU count and load, memory, disk, uptime and Python version, and
remember them as capabilities; ``publish_service_capabilities`` (inherited, also periodic) sends
them to the scheduler. It is what the README demo drives.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from typing import Any

from ..manager import SchedulerDependentManager
from ..periodic import periodic_task


def _meminfo() -> dict[str, int]:
    """Memory figures in MiB from /proc/meminfo (Linux), or an empty dict elsewhere."""
    wanted = {"MemTotal": "memory_total_mb", "MemAvailable": "memory_available_mb"}
    facts = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                key, _, rest = line.partition(":")
                if key in wanted:
                    facts[wanted[key]] = int(rest.split()[0]) // 1024
    except OSError:
        pass
    return facts


def _uptime_seconds() -> float | None:
    try:
        with open("/proc/uptime", encoding="ascii") as uptime:
            return float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class HostInfoManager(SchedulerDependentManager):
    """Reports this host's CPU, load, memory, disk, uptime and Python version."""

    RPC_API_VERSION = "1.1"
    TOPIC = "hostinfo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("service_name", "hostinfo")
        super().__init__(*args, **kwargs)
        self.facts: dict[str, Any] = {}
        self.disk_path = os.environ.get("HOSTINFO_DISK_PATH", "/")

    def _remember(self, **facts: Any) -> None:
        self.facts.update(facts)
        self.update_service_capabilities(dict(self.facts))

    @periodic_task(spacing=10, run_immediately=True)
    def gather_cpu(self, context: Any) -> None:
        load1, load5, load15 = os.getloadavg()
        self._remember(
            cpu_count=os.cpu_count(),
            load={"1m": round(load1, 2), "5m": round(load5, 2), "15m": round(load15, 2)},
        )

    @periodic_task(spacing=30, run_immediately=True)
    def gather_memory(self, context: Any) -> None:
        self._remember(**_meminfo())

    @periodic_task(spacing=60, run_immediately=True)
    def gather_disk(self, context: Any) -> None:
        usage = shutil.disk_usage(self.disk_path)
        self._remember(
            disk_total_gb=round(usage.total / 2**30, 1),
            disk_free_gb=round(usage.free / 2**30, 1),
        )

    @periodic_task(spacing=60, run_immediately=True)
    def gather_system(self, context: Any) -> None:
        self._remember(
            uptime_s=_uptime_seconds(),
            python_version=platform.python_version(),
            platform=sys.platform,
        )

    # RPC methods -------------------------------------------------------------

    def get_facts(self, context: Any) -> dict[str, Any]:
        """The facts gathered so far."""
        return dict(self.facts)

    def echo(self, context: Any, value: Any = None) -> Any:
        """Return the value unchanged (a round-trip check)."""
        return value

    def sleep(self, context: Any, seconds: float = 1.0) -> float:
        """Sleep, then return the seconds slept (for timeout and shutdown drills)."""
        seconds = max(0.0, min(float(seconds), 3600.0))
        time.sleep(seconds)
        return seconds

    def fail(self, context: Any, message: str = "deliberate failure") -> None:
        """Raise ValueError(message) (for error-path drills)."""
        raise ValueError(message)
