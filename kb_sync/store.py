"""The versioned KB in Redis.

Keys under the namespace ``<ns>``:

- ``<ns>:seq``           version counter (INCR; versions only grow)
- ``<ns>:v:<n>``         the entries of version n, one orjson blob, never modified once written
- ``<ns>:v:<n>:meta``    JSON: version, published_at, author, message, action, entries, sha256, parent
- ``<ns>:current``       the version the workers serve
- ``<ns>:history``       list of the meta JSON of every version that became current (append-only)
- ``<ns>:events``        pub/sub channel: {"version": n} after every pointer change

A new version is written first; a Lua script then moves the pointer, appends to the history and
publishes the notice in one atomic step, and only when no newer version won the race (``publish``) or
when the version it was built on is still current (``apply_delta``). Readers therefore only ever
see complete versions.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from kb_sync.loader import KBFileError, apply_delta_entries
from kb_sync.model import KBEntry, KBSnapshot
from worker.config import Settings
from worker.schemas import SchemaError

DEFAULT_KEEP_VERSIONS = 100
_DELTA_RETRIES = 5

# KEYS: current, history, events-channel. ARGV: version, meta-json, mode ("newer" | "based_on"), base.
_SWAP_SCRIPT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local version = tonumber(ARGV[1])
if ARGV[3] == 'newer' then
  if current >= version then return 0 end
elseif current ~= tonumber(ARGV[4]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], '{"version":' .. ARGV[1] .. '}')
return 1
"""


class KBStoreError(RuntimeError):
    """Base of the store's errors."""


class KBNotFound(KBStoreError):
    """The requested version (or any version) does not exist in this namespace."""


class KBCorrupt(KBStoreError):
    """A stored version does not decode, does not match its checksum, or has invalid entries."""


class KBConflict(KBStoreError):
    """Another writer moved the pointer first; retry on the new current version."""


class KBTooLarge(KBStoreError):
    """A version would exceed kb_max_entries."""


def redis_client(settings: Settings, *, socket_timeout_s: float = 5.0) -> redis.Redis:
    """A Redis client for the KB with timeouts, so nothing hangs when Redis does."""
    return redis.Redis.from_url(
        settings.redis_url,
        password=settings.redis_password_value(),
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=min(socket_timeout_s, 3.0),
        health_check_interval=30,
    )


class KBStore:
    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        max_entries: int = 500_000,
        keep_versions: int = DEFAULT_KEEP_VERSIONS,
    ) -> None:
        if not namespace:
            raise ValueError("kb_namespace must not be empty")
        self.client = client
        self.namespace = namespace
        self.max_entries = max_entries
        self.keep_versions = max(1, keep_versions)
        self._swap = client.register_script(_SWAP_SCRIPT)

    # --- keys --------------------------------------------------------------------------------
    @property
    def events_channel(self) -> str:
        return f"{self.namespace}:events"

    @property
    def current_key(self) -> str:
        return f"{self.namespace}:current"

    def _blob_key(self, version: int) -> str:
        return f"{self.namespace}:v:{version}"

    def _meta_key(self, version: int) -> str:
        return f"{self.namespace}:v:{version}:meta"

    # --- writing -----------------------------------------------------------------------------
    def publish(self, entries: Iterable[KBEntry], *, author: str, message: str = "") -> int:
        """Publish a whole KB as a new version and make it current; returns the version."""
        return self._publish(tuple(entries), author=author, message=message, action="publish", base=None)

    def apply_delta(
        self, upserts: Iterable[KBEntry], removes: Iterable[str], *, author: str, message: str = ""
    ) -> int:
        """Build a new version from the current one plus upserts minus removes; returns the version."""
        upserts, removes = tuple(upserts), tuple(removes)
        for _ in range(_DELTA_RETRIES):
            base = self.current_version()
            base_entries = self.load(base).entries if base is not None else ()
            entries = apply_delta_entries(base_entries, upserts, removes)
            try:
                return self._publish(entries, author=author, message=message, action="delta", base=base or 0)
            except KBConflict:
                continue  # someone published meanwhile: rebuild on their version
        raise KBConflict(f"the KB kept changing while applying a delta ({_DELTA_RETRIES} attempts)")

    def rollback(self, version: int, *, author: str) -> int:
        """Publish the content of an older version as a new version (history stays append-only)."""
        old = self.load(version)
        return self._publish(
            old.entries, author=author, message=f"rollback to v{version}", action="rollback", base=None
        )

    def _publish(
        self, entries: tuple[KBEntry, ...], *, author: str, message: str, action: str, base: int | None
    ) -> int:
        _check_entries(entries, self.max_entries)
        blob = orjson.dumps([entry.to_dict() for entry in entries])
        version = int(self.client.incr(f"{self.namespace}:seq"))
        meta = {
            "version": version,
            "published_at": _now(),
            "author": author,
            "message": message,
            "action": action,
            "entries": len(entries),
            "sha256": hashlib.sha256(blob).hexdigest(),
            "parent": base,
        }
        meta_json = orjson.dumps(meta)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self._blob_key(version), blob)
        pipe.set(self._meta_key(version), meta_json)
        pipe.execute()
        mode, based_on = ("newer", 0) if base is None else ("based_on", base)
        swapped = self._swap(
            keys=[self.current_key, f"{self.namespace}:history", self.events_channel],
            args=[version, meta_json, mode, based_on],
        )
        self._prune(version)
        if not swapped:
            self.client.delete(self._blob_key(version), self._meta_key(version))
            raise KBConflict(f"version {version} lost the race: the current KB changed meanwhile")
        return version

    def _prune(self, newest: int) -> None:
        # Keep the last keep_versions blobs (meta and history stay); never drop the current one.
        old = newest - self.keep_versions
        if old >= 1 and self.current_version() != old:
            self.client.delete(self._blob_key(old))

    # --- reading -----------------------------------------------------------------------------
    def current_version(self) -> int | None:
        raw = self.client.get(self.current_key)
        return int(raw) if raw is not None else None

    def current_stamp(self) -> tuple[int, str] | None:
        """(version, publish stamp) of the current KB. The stamp tells a version apart from an
        unrelated one with the same number (a Redis restarted without persistence counts from 1)."""
        version = self.current_version()
        if version is None:
            return None
        raw = self.client.get(self._meta_key(version))
        if raw is None:
            return version, ""
        try:
            meta = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return version, ""
        return version, f"{meta.get('published_at', '')}/{meta.get('sha256', '')}"

    def load(self, version: int | None = None, *, reuse: DecodedEntries | None = None) -> KBSnapshot:
        """The snapshot of ``version`` (current when None), checksum- and schema-checked.

        ``reuse`` (the watcher's): entries whose JSON is byte-identical to one of the previous load are
        taken from it instead of being validated and built again (``DecodedEntries``).
        """
        if version is None:
            version = self.current_version()
            if version is None:
                raise KBNotFound(f"no KB has been published in namespace {self.namespace!r} yet")
        blob, meta_raw = self.client.mget(self._blob_key(version), self._meta_key(version))
        if blob is None or meta_raw is None:
            raise KBNotFound(
                f"KB version {version} is not stored in namespace {self.namespace!r} "
                f"(never published, lost a race, or pruned: only the last {self.keep_versions} are kept)"
            )
        if isinstance(blob, str):  # a client built with decode_responses=True
            blob = blob.encode()
        try:
            meta = orjson.loads(meta_raw)
        except orjson.JSONDecodeError as exc:
            raise KBCorrupt(f"KB version {version}: metadata is not JSON ({exc})") from None
        if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
            raise KBCorrupt(f"KB version {version}: content does not match its sha256 checksum")
        return KBSnapshot(
            version=version,
            entries=decode_entries(blob, version, self.max_entries, reuse=reuse),
            published_at=str(meta.get("published_at", "")),
            author=str(meta.get("author", "")),
            message=str(meta.get("message", "")),
            meta=meta,
        )

    def history(self) -> list[dict[str, Any]]:
        """Meta of every version that became current, oldest first."""
        return [orjson.loads(item) for item in self.client.lrange(f"{self.namespace}:history", 0, -1)]

    def diff(self, v1: int, v2: int) -> dict[str, list[dict[str, Any]]]:
        """What changed from v1 to v2: added / removed entries and changed {id, before, after}."""
        old, new = self.load(v1).by_id(), self.load(v2).by_id()
        return {
            "added": [new[i].to_dict() for i in new if i not in old],
            "removed": [old[i].to_dict() for i in old if i not in new],
            "changed": [
                {"id": i, "before": old[i].to_dict(), "after": new[i].to_dict()}
                for i in new
                if i in old and old[i] != new[i]
            ],
        }


class DecodedEntries:
    """The entries of the last version decoded, keyed by the exact JSON bytes each was decoded from.

    A reload that changes a few points of a large KB then validates and builds only those: an item whose
    re-serialised JSON (``orjson.dumps`` of the decoded value, key order kept) equals a previous item's is
    the same JSON value, so it validates the same and yields an equal (immutable) ``KBEntry``, which is
    shared, together with its cached ``content_hash``. Only the latest successfully decoded version is
    kept, so memory stays one KB's worth.
    """

    def __init__(self) -> None:
        self._by_json: dict[bytes, KBEntry] = {}
        self.reused = 0  # entries taken from the previous version by the last decode
        self.built = 0  # entries validated and built by the last decode

    def __len__(self) -> int:
        return len(self._by_json)


def decode_entries(
    blob: bytes, version: int, max_entries: int, *, reuse: DecodedEntries | None = None
) -> tuple[KBEntry, ...]:
    """Decode and re-validate a version blob (defence in depth: Redis can be written by anyone)."""
    try:
        items = orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        raise KBCorrupt(f"KB version {version}: content is not JSON ({exc})") from None
    if not isinstance(items, list):
        raise KBCorrupt(f"KB version {version}: content is not a list of entries")
    known = reuse._by_json if reuse is not None else {}
    decoded: dict[bytes, KBEntry] = {}
    entries = []
    reused = 0
    for index, item in enumerate(items):
        key = orjson.dumps(item) if reuse is not None else b""
        entry = known.get(key)
        if entry is not None:
            reused += 1
        else:
            try:
                entry = KBEntry.from_dict(item)
            except (SchemaError, TypeError, KeyError) as exc:
                raise KBCorrupt(f"KB version {version}: entry {index}: {exc}") from None
        if reuse is not None:
            decoded[key] = entry
        entries.append(entry)
    try:
        _check_entries(tuple(entries), max_entries)
    except (KBFileError, KBTooLarge) as exc:
        raise KBCorrupt(f"KB version {version}: {exc}") from None
    if reuse is not None:
        reuse.reused, reuse.built = reused, len(entries) - reused
        reuse._by_json = decoded
    return tuple(entries)


def _check_entries(entries: tuple[KBEntry, ...], max_entries: int) -> None:
    if not entries:
        raise KBFileError("<kb>", ["refusing an empty KB (it would silently disable the expert knowledge)"])
    if len(entries) > max_entries:
        raise KBTooLarge(f"{len(entries)} entries exceed kb_max_entries={max_entries}")
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise KBFileError("<kb>", [f"duplicate id {entry.id!r}"])
        seen.add(entry.id)


def _now() -> str:
    return datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
