"""The broker itself goes away and comes back, on a private node this module may stop.

While it is down: a call that was waiting ends at once with exit 69 (it does not wait out its
timeout), and every broker-facing command exits 69 within the connect timeout, since nothing
listens on the port any more. Once it is back: the service, which never stopped, has
reconnected on its own and consumes its queues again.
"""

from __future__ import annotations

import time

from faults_support import FAST_RECONNECT, managerctl, serve, start_managerctl, wait_for

CONNECT_TIMEOUT = 2.0
SLACK = 2.0


def test_a_broker_stop_and_start_under_a_service_and_its_callers(running_private_broker, tmp_path):
    broker = running_private_broker
    service = serve(
        "hostinfo", url=broker.url + FAST_RECONNECT, exchange="openstack", log_dir=tmp_path
    )
    try:
        call = start_managerctl(
            "call",
            service.host,
            "sleep",
            # Long enough that the broker is surely down before the answer: stopping a node
            # takes a few seconds on a loaded machine, and a 3 s sleep once beat it.
            "seconds=15",
            "--topic",
            service.topic,
            "--timeout",
            "30",
            env=service.env,
        )
        time.sleep(1.5)
        assert call.poll() is None, call.communicate()
        stopping = time.monotonic()
        broker.stop(cleanup=False)
        stopped = time.monotonic()
        out, err = call.communicate(timeout=30)
        # It ended with the broker, long before its 30 s timeout, saying why.
        assert call.returncode == 69, (out, err)
        assert time.monotonic() - stopping < (stopped - stopping) + SLACK, err
        assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err

        for command in (
            ("ping", service.host),
            ("ping", "--all"),
            ("call", service.host, "echo"),
            ("probe", service.host),
            ("capabilities", "publish"),
        ):
            run = managerctl(*command, "--topic", service.topic, env=service.env)
            assert run.returncode == 69, run
            assert run.elapsed < CONNECT_TIMEOUT, run
            assert len(run.error_lines) == 1 and "cannot reach the message broker" in run.stderr
        assert service.proc.poll() is None, service.log()

        log_mark = len(service.log())
        broker.start()
        assert service.wait_for_log("reconnected to the broker", after=log_mark), service.log()
        ping = wait_for(
            lambda: service.run("ping", service.host, "--timeout", "5").returncode == 0, 10, 0.5
        )
        assert ping, service.log()
        queues = {q["name"]: q for q in broker.list_queues(("name", "messages", "consumers"))}
        for name in (service.topic, f"{service.topic}.{service.host}"):
            assert queues[name]["consumers"] == 1, queues
        fanout = [q for n, q in queues.items() if n.startswith(f"{service.topic}_fanout_")]
        assert [q["consumers"] for q in fanout] == [1], queues
        log = service.log()
        assert "lost the connection" in log and "Traceback" not in log, log
    finally:
        service.stop()
