"""The operations HTTP server: ``/metrics`` (Prometheus), ``/healthz`` (live), ``/readyz`` (ready).

Live means the run loop is turning (it touches a heartbeat every iteration, including idle polls); a
loop stuck for longer than ``stall_s`` (e.g. a hung native call) fails liveness so Kubernetes restarts
the pod. Ready means every check registered by the stages passes; ``/readyz`` names the ones that do not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from worker import metrics

log = logging.getLogger(__name__)


class Health:
    """Readiness checks and the liveness heartbeat, shared by the stages of one process."""

    def __init__(self, stall_s: float = 120.0) -> None:
        self.stall_s = stall_s
        self._checks: dict[str, Callable[[], bool]] = {}
        self._beats: dict[str, float] = {}
        self._lock = threading.Lock()

    def add_check(self, name: str, check: Callable[[], bool]) -> None:
        with self._lock:
            self._checks[name] = check

    def beat(self, loop: str) -> None:
        self._beats[loop] = time.monotonic()

    def failing(self) -> list[str]:
        with self._lock:
            checks = dict(self._checks)
        failed = []
        for name, check in checks.items():
            try:
                ok = check()
            except Exception:  # a check that raises is a failing check, not a crashed server
                log.exception("readiness check %s raised", name)
                ok = False
            if not ok:
                failed.append(name)
        return failed

    def not_ready(self) -> list[str]:
        """Why the process is not ready ([] when it is); refreshes the finsignal_ready gauge."""
        reasons = self.failing() if self._checks else ["starting"]
        metrics.READY.set(0 if reasons else 1)
        return reasons

    def ready(self) -> bool:
        return not self.not_ready()

    def stalled(self) -> list[str]:
        now = time.monotonic()
        return [loop for loop, at in self._beats.items() if now - at > self.stall_s]


class OpsServer:
    def __init__(self, health: Health, host: str, port: int) -> None:
        handler = _handler_for(health)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            from worker.config import ConfigError

            raise ConfigError(
                f"metrics server cannot bind {host}:{port} ({exc.strerror}); set --metrics-port / "
                "FINSIGNAL_METRICS_PORT to a free port (0 picks one) or --metrics-host"
            ) from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    def start(self) -> OpsServer:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics (/healthz, /readyz)", self.host, self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                health.ready()  # refresh the finsignal_ready gauge at scrape time
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                stalled = health.stalled()
                body = {"status": "stalled" if stalled else "ok", "stalled": stalled}
                self._send(503 if stalled else 200, orjson.dumps(body), "application/json")
            elif path == "/readyz":
                failing = health.not_ready()
                ready = not failing
                body = {"status": "ready" if ready else "not ready", "failing": failing}
                self._send(200 if ready else 503, orjson.dumps(body), "application/json")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return  # scrapes every few seconds would flood the log

    return Handler
