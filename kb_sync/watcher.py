"""Reload the KB in the background: pub/sub notices for speed, a pointer poll for certainty.

Pub/sub notices are lost while disconnected (and before the subscription is up), so the watcher also
reads ``<ns>:current`` every ``poll_interval_s`` and right after every (re)connect. A new version is
loaded, checked again (checksum + schema; entries byte-identical to the previous version's are reused
rather than validated again, see ``DecodedEntries``), and handed to ``on_snapshot``; a bad version is refused
and the previous KB keeps serving. Status changes are reported through ``on_status``:

- ``"ok"``      connected, and the last version seen was delivered (or there is none yet)
- ``"stale"``   Redis unreachable; retrying with exponential backoff (capped at 5 s)
- ``"invalid"`` the current version was refused (see ``last_error``); the old KB keeps serving
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from kb_sync.model import KBSnapshot
from kb_sync.store import DecodedEntries, KBCorrupt, KBNotFound, KBStore

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 5.0
_WAKE_S = 0.25  # longest wait on pub/sub, so stop() is prompt


class KBWatcher:
    def __init__(
        self,
        client_factory: Callable[[], redis.Redis],
        namespace: str,
        poll_interval_s: float,
        on_snapshot: Callable[[KBSnapshot], None],
        on_status: Callable[[str], None] | None = None,
        *,
        max_entries: int = 500_000,
    ) -> None:
        self._client_factory = client_factory
        self.namespace = namespace
        self.poll_interval_s = poll_interval_s
        self._on_snapshot = on_snapshot
        self._on_status = on_status
        self._max_entries = max_entries
        self._stop = threading.Event()
        self._delivered = threading.Condition()
        self._thread: threading.Thread | None = None
        self.delivered_version: int | None = None
        self.refused_version: int | None = None
        self._delivered_stamp: tuple[int, str] | None = None
        self._refused_stamp: tuple[int, str] | None = None
        self._failures = 0
        # Entries of the last version read: a reload validates and builds only the points that changed.
        self._decoded = DecodedEntries()
        self.deliveries = 0  # snapshots handed to on_snapshot so far
        self.status: str | None = None
        self.last_error: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"kb-watcher[{self.namespace}]", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def wait_for_version(self, version: int, timeout: float) -> bool:
        """Block until a version >= ``version`` was delivered; False on timeout (for tests)."""
        deadline = time.monotonic() + timeout
        with self._delivered:
            while self.delivered_version is None or self.delivered_version < version:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._delivered.wait(left)
        return True

    def check_now(self, client: redis.Redis) -> None:
        """Compare the pointer with the delivered version and deliver when it moved (one step)."""
        store = KBStore(client, self.namespace, max_entries=self._max_entries)
        stamp = store.current_stamp()
        if stamp is None or stamp == self._delivered_stamp:
            # Nothing published (e.g. Redis came back empty): keep serving what we have.
            self._set_status("ok")
            return
        if stamp == self._refused_stamp:
            return
        version = stamp[0]
        start = time.perf_counter()
        try:
            snapshot = store.load(version, reuse=self._decoded)
        except (KBCorrupt, KBNotFound) as exc:
            # A version that cannot be read stays refused until the pointer moves again.
            self.refused_version = version
            self._refused_stamp = stamp
            self.last_error = str(exc)
            log.error("KB version %d refused, keeping version %s: %s", version, self.delivered_version, exc)
            self._set_status("invalid")
            return
        log.info(
            "KB version %d read in %.2f s (%d entries as in the previous version, %d validated)",
            version,
            time.perf_counter() - start,
            self._decoded.reused,
            self._decoded.built,
        )
        try:
            self._on_snapshot(snapshot)
        except Exception:
            # The consumer could not take it (e.g. embedding failed); retried at the next poll.
            log.exception("KB version %d: on_snapshot failed; retrying at the next poll", version)
            return
        with self._delivered:
            self.delivered_version = version
            self._delivered_stamp = stamp
            self.deliveries += 1
            self._delivered.notify_all()
        self.refused_version = None
        self._refused_stamp = None
        self.last_error = None
        log.info("KB version %d delivered (%d entries)", version, len(snapshot.entries))
        self._set_status("ok")

    # --- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            client: redis.Redis | None = None
            pubsub = None
            try:
                client = self._client_factory()
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(f"{self.namespace}:events")
                self.check_now(client)  # notices sent while we were away are lost: look now
                backoff = 0.1
                self._failures = 0
                self._listen(client, pubsub)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self.last_error = f"Redis unreachable: {exc}"
                self._failures += 1
                # Warn once per outage; the retries of a long outage go to debug.
                level = logging.WARNING if self._failures == 1 else logging.DEBUG
                log.log(level, "KB watcher: %s; retrying in %.1f s", self.last_error, backoff)
                self._set_status("stale")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except Exception:
                log.exception("KB watcher: unexpected error; retrying in %.1f s", backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            finally:
                _close(pubsub, client)

    def _listen(self, client: redis.Redis, pubsub: redis.client.PubSub) -> None:
        next_poll = time.monotonic() + self.poll_interval_s
        while not self._stop.is_set():
            wait = max(0.0, min(next_poll - time.monotonic(), _WAKE_S))
            message = pubsub.get_message(timeout=wait)
            if message is not None and message.get("type") == "message":
                self.check_now(client)
            if time.monotonic() >= next_poll:
                self.check_now(client)
                next_poll = time.monotonic() + self.poll_interval_s

    def _set_status(self, status: str) -> None:
        if status == self.status:
            return
        self.status = status
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:
                log.exception("KB watcher: on_status callback failed")


def _close(pubsub: redis.client.PubSub | None, client: redis.Redis | None) -> None:
    for closable in (pubsub, client):
        if closable is None:
            continue
        try:
            closable.close()
        except Exception:  # closing a dead connection may raise; nothing to do about it
            log.debug("KB watcher: close failed", exc_info=True)
