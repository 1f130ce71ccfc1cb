"""A TCP fault proxy on loopback: put it between a client (or a service) and a broker, then make
the network misbehave on purpose.

``FaultProxy(port)`` listens on a free 127.0.0.1 port and forwards every connection to
``127.0.0.1:port``. While it runs it can

* ``delay(seconds)``: hold every chunk of data that long before forwarding it (a slow link);
* ``blackhole()``: accept connections and forward nothing, either way (a firewall dropping
  packets, a half-dead host): new connections never reach the broker, live ones go silent;
* ``cut()``: close every live connection at once, on both sides (a broker or NAT reset);
* ``heal()``: back to plain forwarding for what comes next.

Threads and blocking sockets only, one pump thread per direction; nothing leaves loopback.
``GarbageServer`` is the other way a port can be wrong: something listens there, but it speaks
another protocol (it answers like an HTTP server and hangs up).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

LOOPBACK = "127.0.0.1"
_CHUNK = 65536


def _close(sock: socket.socket, *, reset: bool = False) -> None:
    """Shut a socket down and close it: a FIN, or with ``reset`` a RST (as a crashed peer).

    The shutdown matters: close() alone does not wake a pump thread blocked in recv, and the
    kernel keeps the connection open, silent, until that recv returns.
    """
    with contextlib.suppress(OSError):
        if reset:
            # Linger 0 makes the last close send a RST; SHUT_RD wakes the reader without a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RD)
        else:
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """One proxied connection: the client's socket and the broker's, and their two pumps."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket | None):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()

    def start(self) -> None:
        if self.upstream is None:  # blackholed from the start: hold the client, read nothing
            return
        for source, sink, name in (
            (self.client, self.upstream, "up"),
            (self.upstream, self.client, "down"),
        ):
            threading.Thread(
                target=self._pump, args=(source, sink), name=f"fault-proxy-{name}", daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                data = source.recv(_CHUNK)
                if not data:
                    break
                delay = self.proxy.current_delay
                if delay:
                    time.sleep(delay)
                if self.proxy.blackholed:
                    continue  # swallowed: the other side never hears of it
                sink.sendall(data)
        except OSError:
            pass
        self.close()

    def close(self, *, reset: bool = False) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        _close(self.client, reset=reset)
        if self.upstream is not None:
            _close(self.upstream, reset=reset)
        self.proxy._forget(self)


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_port`` and break the link on demand."""

    def __init__(self, target_port: int, target_host: str = LOOPBACK) -> None:
        self.target = (target_host, target_port)
        self.current_delay = 0.0
        self.blackholed = False
        self.accepted = 0  # connections accepted so far, blackholed ones included
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"<FaultProxy :{self.port} -> {self.target[0]}:{self.target[1]}>"

    def url(self, broker_url: str) -> str:
        """``broker_url`` (rabbit://user:pass@127.0.0.1:PORT/...) aimed at this proxy instead."""
        prefix, _, rest = broker_url.partition("@")
        hostport, slash, tail = rest.partition("/")
        return f"{prefix}@{LOOPBACK}:{self.port}{slash}{tail}"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        _close(self._listener)
        self.cut()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self.accepted += 1
            upstream = None
            if not self.blackholed:
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                    upstream.settimeout(None)
                except OSError:
                    _close(client)  # the broker is down: the client sees a refused link
                    continue
            link = _Link(self, client, upstream)
            with self._lock:
                self._links.add(link)
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    # -- faults ----------------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """Connections open through the proxy right now."""
        with self._lock:
            return len(self._links)

    def delay(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before forwarding it, both ways (0 for none)."""
        self.current_delay = float(seconds)

    def blackhole(self) -> None:
        """Forward nothing from now on: new connections are accepted and left unanswered."""
        self.blackholed = True

    def heal(self) -> None:
        """Forward again, without delay (connections blackholed meanwhile stay silent)."""
        self.blackholed = False
        self.current_delay = 0.0

    def cut(self, *, reset: bool = False) -> int:
        """Close every live connection on both sides; how many there were."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close(reset=reset)
        return len(links)


class GarbageServer:
    """A port where something listens that is not AMQP: it answers like HTTP and hangs up."""

    ANSWER = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="garbage-server", daemon=True)

    def start(self) -> GarbageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        _close(self._listener)

    def __enter__(self) -> GarbageServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError):
                client.settimeout(2)
                client.recv(1024)
                client.sendall(self.ANSWER)
            _close(client)
