"""One error taxonomy for managerctl; every class owns its exit code (DESIGN.md).

Lower-layer errors (pika, socket, oslo.config) are mapped to these at one boundary each, with
``raise ... from None`` where the lower error would only add noise. The CLI prints
``managerctl: error: <message>`` (plus the hint) on stderr and exits with ``exit_code``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REMOTE_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_UNAVAILABLE = 69
EXIT_TIMEOUT = 75
EXIT_ACCESS_REFUSED = 77
EXIT_CONFIG = 78
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

# (code, meaning) in the order the README, the --help epilog and the man page list them.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success"),
    (EXIT_REMOTE_ERROR, "the remote method raised, or a periodic task failed"),
    (EXIT_USAGE, "usage error or bad input (unknown manager, task, hook, bad argument)"),
    (EXIT_PARTIAL, "partial: some expected hosts answered, not all"),
    (EXIT_UNAVAILABLE, "unavailable: broker unreachable, nobody consumes the target, no reply"),
    (EXIT_TIMEOUT, "timed out waiting for a reply (a retry may help)"),
    (EXIT_ACCESS_REFUSED, "the broker refused the credentials or the permission"),
    (EXIT_CONFIG, "configuration error, or a manager class that fails to import"),
    (EXIT_INTERNAL, "internal error: a bug in managerctl (please report it)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)


class ManagerCtlError(Exception):
    """Base of every error managerctl reports to a user."""

    exit_code = EXIT_REMOTE_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}; {self.hint}"


class BadInputError(ManagerCtlError):
    """The user's input was wrong: an unknown name, a malformed argument (exit 2)."""

    exit_code = EXIT_USAGE


class UnknownNameError(BadInputError):
    """A manager, task, hook or column name that does not exist (exit 2)."""


class ConfigError(ManagerCtlError):
    """A configuration file is unreadable or invalid, or a manager fails to load (exit 78)."""

    exit_code = EXIT_CONFIG


class ManagerLoadError(ConfigError):
    """A manager class failed to import or is not a Manager (exit 78)."""


class TaskFailedError(ManagerCtlError):
    """One or more periodic tasks raised (exit 1)."""

    exit_code = EXIT_REMOTE_ERROR


class RemoteError(ManagerCtlError):
    """The remote method raised an exception not allowed to be re-raised locally (exit 1).

    Mirrors ``oslo_messaging.RemoteError``: the remote class name, its message and traceback.
    """

    exit_code = EXIT_REMOTE_ERROR

    def __init__(
        self, exc_type: str | None = None, value: str | None = None, traceback: str | None = None
    ) -> None:
        self.exc_type = exc_type
        self.value = value
        self.traceback = traceback
        super().__init__(f"remote error: {exc_type}: {value}")


class AllFailedError(ManagerCtlError):
    """Every service that answered sent back a failure (exit 1, as a remote failure)."""

    exit_code = EXIT_REMOTE_ERROR


class PartialResultError(ManagerCtlError):
    """A multi-host command got answers from some expected hosts, not all (exit 3)."""

    exit_code = EXIT_PARTIAL


class UnavailableError(ManagerCtlError):
    """The broker is unreachable, or nobody consumes the target (exit 69)."""

    exit_code = EXIT_UNAVAILABLE


class BrokerUnreachableError(UnavailableError):
    """No host of the transport URL accepted a connection (exit 69)."""


class NoConsumerError(UnavailableError):
    """Nobody consumes the target queue, so a call could never be answered (exit 69)."""


class CallTimeoutError(ManagerCtlError):
    """No reply arrived before the deadline (exit 75)."""

    exit_code = EXIT_TIMEOUT


class AccessRefusedError(ManagerCtlError):
    """The broker refused the credentials or the permission, AMQP 403 (exit 77)."""

    exit_code = EXIT_ACCESS_REFUSED


def remote_error_from(exc: BaseException, hint: str | None = None) -> BaseException:
    """A remote failure as one readable line (exit 1), its traceback kept for --debug.

    Only what wire.deserialize_failure rebuilt (it sets ``remote_traceback``) came from the
    service; any other exception is local (a bug, or a lower-layer error nobody mapped) and is
    returned as it is, so it reads as an internal error (exit 70), never as the remote method
    having raised (exit 1). The line comes from the failure's own message, not ``str(exc)``,
    which for a KeyError is the repr of its first argument with the whole remote traceback
    escaped into it.
    """
    if isinstance(exc, RemoteError):
        first = (exc.value or "").splitlines()
        error = RemoteError(exc.exc_type, first[0] if first else "", exc.traceback)
    elif isinstance(exc, ManagerCtlError) or not hasattr(exc, "remote_traceback"):
        return exc
    else:
        message = getattr(exc, "remote_message", None)
        if message is None:
            message = (str(exc).splitlines() or [""])[0]
        lines = message.splitlines()
        error = RemoteError(
            type(exc).__name__, lines[0] if lines else "", getattr(exc, "remote_traceback", None)
        )
    error.hint = hint
    return error
