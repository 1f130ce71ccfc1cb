"""Small helpers shared by the throwaway servers (RabbitMQ, PostgreSQL) of the test rigs."""

from __future__ import annotations

import os
import pwd
import socket

LOOPBACK = "127.0.0.1"


def tail(path: str, lines: int = 40) -> str:
    """The last lines of a log file, for an error message (never raises)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def chown_tree(path: str, username: str) -> None:
    """Give a directory tree to ``username`` when running as root (the servers drop root).

    Nothing to do when not root, or when the user does not exist (the server start then
    reports that itself, with a clearer message).
    """
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam(username)
    except KeyError:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to host:port is accepted right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
