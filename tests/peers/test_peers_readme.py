"""Every README example against nova and cinder gives its documented verdict (issue 13 item 3).

The examples are read from README.md at test time, so a recipe that is edited there is tested as
it stands. Each runs as a shell command in a directory with the operator's files, with only
what cannot be the same here replaced: /etc/nova/nova.conf and /etc/cinder/cinder.conf by the
rig's files, the placeholder hosts (web01, "$(hostname)") by the rig's hosts, ``--expect 12``
by the rig's count, and the operator's transport URL in the environment for the examples that
name no config file. Against healthy services every one must report alive (exit 0); the probe
recipes must also say down (69) for a host nobody serves and stuck (75) for a stopped
nova-compute, and the Nagios plugin must map them to OK / WARNING / CRITICAL.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from peers_support import (
    CINDER_BACKENDS,
    CINDER_HOST,
    MANAGERCTL,
    NOVA_COMPUTES,
    NOVA_HOST,
    REPO,
    Cloud,
    format_errors,
    managerctl_env,
)

README = REPO / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_CRON = re.compile(r"^(\S+\s+){5}(?=managerctl )")
# Which real service an example is about.
_ABOUT = re.compile(
    r"nova\.conf|cinder\.conf|--exchange nova|--(scheduler-)?topic (compute|conductor|cinder)"
)


@dataclass
class Example:
    text: str  # the command or script as the README has it
    script: bool  # a whole #! script rather than one command line
    line: int

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.text.splitlines()[0]}"


def readme_examples() -> list[Example]:
    text = README.read_text()
    found: list[Example] = []
    for fence in _FENCE.finditer(text):
        lang, body = fence.group(1), fence.group(2)
        line = text.count("\n", 0, fence.start(2)) + 1
        if lang == "yaml":
            command = re.search(r"command:\s*(\[.*?\])", body, re.S)
            if command and _ABOUT.search(command.group(1)):
                argv = eval(command.group(1), {})  # a YAML flow list of plain strings
                found.append(Example(shlex.join(argv), False, line))
            continue
        if lang not in ("sh", "bash", "console", ""):
            continue
        if body.startswith("#!"):
            if _ABOUT.search(body):
                found.append(Example(body, True, line))
            continue
        for offset, logical in _logical_lines(body):
            command = _CRON.sub("", logical.strip())
            if not command.startswith("managerctl ") or not _ABOUT.search(command):
                continue
            if " serve " in f" {command} ":
                continue  # long-running, exercised by the good-citizen tests
            found.append(Example(_strip_comment(command), False, line + offset))
    return found


def _logical_lines(body: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for i, raw in enumerate(body.splitlines()):
        if not pending:
            start = i
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        out.append((start, pending + raw))
        pending = ""
    return out


def _strip_comment(command: str) -> str:
    # A trailing "   # what it does" comment, outside quotes.
    return re.split(r"\s{2,}#\s", command, maxsplit=1)[0].strip()


@dataclass
class Operator:
    """A shell on the operator's box: managerctl on PATH, the rig's files standing in."""

    cloud: Cloud
    home: Path
    nova_conf: Path

    def adapt(self, text: str) -> str:
        text = text.replace("/etc/nova/nova.conf", str(self.nova_conf))
        text = text.replace("/etc/cinder/cinder.conf", str(self.cloud.cinder_conf))
        text = text.replace('"$(hostname)"', NOVA_COMPUTES[0])
        text = re.sub(r"--expect \d+", f"--expect {len(NOVA_COMPUTES)}", text)
        # A tap streams until told to stop: the test gives it a few seconds, as an operator
        # watching it would press Ctrl-C.
        text = re.sub(r"--duration \d+", "--duration 3", text)
        if re.search(r"\btap\b", text) and "--duration" not in text and "--count" not in text:
            text = re.sub(r"(\btap\b[^|>]*?)(\s*(?:[|>]|$))", r"\1 --duration 3\2", text, count=1)

        topic = re.search(r"--topic[ =](\S+)", text)
        hosts = HOSTS_BY_TOPIC.get(topic.group(1) if topic else "", NOVA_COMPUTES)
        # web01, web02, ...: the rig's hosts of that topic, in order.
        return re.sub(r"\bweb0(\d)\b", lambda m: hosts[(int(m.group(1)) - 1) % len(hosts)], text)

    def run(self, example: Example, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        body = self.adapt(example.text)
        env = managerctl_env(
            PATH=f"{os.path.dirname(MANAGERCTL)}{os.pathsep}{os.environ.get('PATH', '')}",
            MANAGERCTL_TRANSPORT_URL=self.cloud.url,
        )
        argv = ["bash", "-c", body] if not example.script else ["bash", "-s"]
        return subprocess.run(
            argv,
            input=body if example.script else None,
            capture_output=True,
            text=True,
            cwd=self.home,
            env=env,
            timeout=timeout,
        )


def operator(
    cloud: Cloud,
    home: Path,
    nova_host: str = NOVA_COMPUTES[0],
    computes: tuple[str, ...] = NOVA_COMPUTES,
) -> Operator:
    home.mkdir(parents=True, exist_ok=True)
    hosts = "# the compute hosts\n" + "".join(f"{h}\n" for h in computes)
    for name in ("hosts.txt", "computes.txt"):
        (home / name).write_text(hosts)
    # The operator's nova.conf on the compute host *nova_host*: the rig's, with its host.
    conf = home / "nova.conf"
    conf.write_text(cloud.nova_conf.read_text())
    text = conf.read_text().replace(f"host = {NOVA_COMPUTES[0]}\n", f"host = {nova_host}\n", 1)
    conf.write_text(text)
    return Operator(cloud, home, conf)


HOSTS_BY_TOPIC = {
    "compute": NOVA_COMPUTES,
    "conductor": (NOVA_HOST,),
    "scheduler": (NOVA_HOST,),
    "cinder-volume": tuple(f"{CINDER_HOST}@{b}" for b in CINDER_BACKENDS),
    "cinder-scheduler": (CINDER_HOST,),
}
EXAMPLES = readme_examples()
# The nova-compute probes of named hosts (a pipeline or "|| logger" line has the verdict of its
# tail; --all counts consumers, not hosts).
PROBES = [
    e
    for e in EXAMPLES
    if not e.script
    and " probe " in e.text
    and "--topic compute" in e.text
    and "--all" not in e.text
    and "|" not in e.text
]
NAGIOS = [e for e in EXAMPLES if e.script and "OK - " in e.text and "CRITICAL" in e.text]


def test_the_readme_has_nova_and_cinder_examples() -> None:
    assert len(EXAMPLES) >= 5, EXAMPLES
    assert PROBES and NAGIOS


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_readme_example_against_healthy_services(
    example: Example, cloud: Cloud, tmp_path: Path
) -> None:
    mark = cloud.marks()
    result = operator(cloud, tmp_path).run(example)
    assert result.returncode == 0, f"{example}\n{result.stdout}\n{result.stderr}"
    if re.search(r" (probe|ping) ", example.text):
        out = result.stdout + result.stderr
        assert not re.search(r"\b(down|stuck|missing)\b", out), out
    if example.script and "OK - " in example.text:
        assert result.stdout.startswith("OK - "), result.stdout
    # No recipe of the README leaves a traceback in a real service's log, unless it names the
    # method to call (--method oslo_rpc_server_ping is for services with rpc_ping_enabled).
    if "--method" not in example.text:
        errors = cloud.rpc_errors_since(mark)
        assert not errors, f"{example}{format_errors(errors)}"


@pytest.mark.parametrize("example", PROBES, ids=str)
def test_readme_probe_says_down_for_a_host_nobody_serves(
    example: Example, cloud: Cloud, tmp_path: Path
) -> None:
    # Every way a recipe names its host (nova.conf's host, "$(hostname)", web01, a hosts
    # file) names one nobody serves.
    gone = "peer-compute-gone"
    ops = operator(cloud, tmp_path, nova_host=gone, computes=(gone, gone + "2"))
    text = re.sub(r"\bweb0\d\b", gone, example.text.replace('"$(hostname)"', gone))
    example = Example(text, False, example.line)
    result = ops.run(example)
    assert result.returncode == 69, f"{example}\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("example", PROBES, ids=str)
def test_readme_probe_says_stuck_for_a_stopped_compute(
    example: Example, cloud: Cloud, tmp_path: Path
) -> None:
    ops = operator(cloud, tmp_path)
    # Keep the stop short (heartbeats): a smaller --timeout than the recipe's own.
    example = Example(re.sub(r"--timeout \d+", "--timeout 3", example.text), False, example.line)
    if "--timeout" not in example.text:
        example.text += " --timeout 3"
    # Every compute stopped: a recipe naming several hosts gets stuck from each.
    with cloud.paused(*(f"nova-compute-{h}" for h in NOVA_COMPUTES)):
        result = ops.run(example)
    assert result.returncode == 75, f"{example}\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("example", NAGIOS, ids=str)
def test_readme_nagios_plugin_maps_the_verdicts(
    example: Example, cloud: Cloud, tmp_path: Path
) -> None:
    gone = operator(cloud, tmp_path / "gone", nova_host="peer-compute-gone").run(example)
    assert gone.returncode == 2 and gone.stdout.startswith("CRITICAL"), gone
    ops = operator(cloud, tmp_path / "ok")
    fast = Example(re.sub(r"--timeout \d+", "--timeout 3", example.text), True, example.line)
    with cloud.paused(f"nova-compute-{NOVA_COMPUTES[0]}"):
        stuck = ops.run(fast)
    assert stuck.returncode == 1 and stuck.stdout.startswith("WARNING"), stuck
