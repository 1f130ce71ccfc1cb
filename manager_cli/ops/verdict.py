"""One decision for every multi-host command: which hosts were expected, which answered.

``ping``, ``probe`` and the remote periodic commands all end the same way, so the rule lives
here once (it had drifted between three copies):

* every expected host answered well: no error (exit 0);
* some did, some did not: partial (3), naming each host that did not and why;
* none did: nobody consumes (69) when every one is down; no answer in time (75) when a
  consumer took a request and sat on it (a retry may help); only failures came back (1).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import (
    AllFailedError,
    CallTimeoutError,
    ManagerCtlError,
    NoConsumerError,
    PartialResultError,
)

OK = "ok"
FAILED = "failed"
DOWN = "down"
STUCK = "stuck"
MISSING = "missing"  # expected, but no answer came (a broadcast cannot tell down from stuck)


def decide(
    outcomes: Sequence[tuple[str | None, str]], *, what: str, topic: str
) -> ManagerCtlError | None:
    """The error to report for ``outcomes`` ((host, state) pairs), or None when all were ok.

    ``what`` names the request in messages ("ping", "probe").
    """
    total = len(outcomes)
    good = sum(1 for _, state in outcomes if state == OK)
    if good == total:
        return None
    bad = [(host, state) for host, state in outcomes if state != OK]
    named = ", ".join(f"{host or '?'} ({state})" for host, state in bad[:20])
    if len(bad) > 20:
        named += f" and {len(bad) - 20} more"
    if good:
        return PartialResultError(
            f"{good} of {total} expected services of topic {topic!r} answered {what}; not: {named}"
        )
    states = {state for _, state in bad}
    if states == {DOWN}:
        return NoConsumerError(
            f"nobody consumes the queues of topic {topic!r} for {named}",
            hint="is the service running there, and are --topic, the hosts and the exchange right?",
        )
    if states & {STUCK, MISSING}:
        return CallTimeoutError(
            f"no service of topic {topic!r} answered {what} in time: {named}",
            hint="they consume their queues but are busy or stuck; a retry may help",
        )
    return AllFailedError(
        f"every service of topic {topic!r} that answered {what} sent back a failure: {named}",
        hint="--debug shows the remote tracebacks",
    )
