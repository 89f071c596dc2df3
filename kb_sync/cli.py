"""`finsignal kb ...`: publish, show, history, rollback and diff the versioned KB in Redis."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import redis
from rich.console import Console
from rich.table import Table

from kb_sync.advice import advice_lines
from kb_sync.loader import DEFAULT_KB_PATH, KBFileError, load_kb_file
from kb_sync.model import KBSnapshot
from kb_sync.store import KBStore, KBStoreError, redis_client
from worker.cli import add_settings_flags, import_optional, settings_from_args
from worker.config import Settings

KB_SETTINGS = [
    "redis_url",
    "redis_password",
    "redis_password_file",
    "kb_namespace",
    "kb_max_entries",
    "kb_keep_versions",
    "log_level",
]
# Modules adding more `kb` sub-commands: each defines register_kb(kb_subparsers). `kb explain` (the
# fusion owner's) goes here; a module that is not there yet is skipped.
KB_EXTRA_COMMAND_MODULES: tuple[str, ...] = ("worker.fusion_cli", "worker.kb_audit")

_TEXT_WIDTH = 70


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kb = subparsers.add_parser("kb", help="manage the versioned expert knowledge base in Redis")
    kb_sub = kb.add_subparsers(dest="kb_command", metavar="KB_COMMAND", required=True)

    publish = kb_sub.add_parser("publish", help="validate a JSONL file and publish it as a new KB version")
    publish.add_argument(
        "file",
        nargs="?",
        default=None,
        help=f"KB file (JSON Lines); default: the starter KB {DEFAULT_KB_PATH.name}",
    )
    publish.add_argument("--delta", action="store_true", help="the file holds upsert/remove operations")
    publish.add_argument("--author", default=None, help="who publishes (default: $USER)")
    publish.add_argument("--message", default="", help="what changed and why")
    publish.set_defaults(handler=_publish)

    show = kb_sub.add_parser("show", help="show a KB version (the current one by default)")
    show.add_argument("--version", type=int, default=None, dest="kb_version", help="version to show")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(handler=_show)

    history = kb_sub.add_parser("history", help="list the versions that became current")
    history.add_argument("--json", action="store_true", help="print JSON instead of a table")
    history.set_defaults(handler=_history)

    rollback = kb_sub.add_parser("rollback", help="publish an old version's content as a new version")
    rollback.add_argument("version", type=int, help="the version whose content to restore")
    rollback.add_argument("--author", default=None, help="who rolls back (default: $USER)")
    rollback.set_defaults(handler=_rollback)

    diff = kb_sub.add_parser("diff", help="entries added, removed and changed between two versions")
    diff.add_argument("v1", type=int)
    diff.add_argument("v2", type=int)
    diff.add_argument("--json", action="store_true", help="print JSON instead of tables")
    diff.set_defaults(handler=_diff)

    add_settings_flags(publish, only=[*KB_SETTINGS, "model_dir"])  # model_dir: the advice on new topics
    for parser in (show, history, rollback, diff):
        add_settings_flags(parser, only=KB_SETTINGS)

    for module_name in KB_EXTRA_COMMAND_MODULES:
        module = import_optional(module_name)
        if module is not None:
            module.register_kb(kb_sub)


# --- handlers ---------------------------------------------------------------------------------
def _publish(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    path = args.file or DEFAULT_KB_PATH
    try:
        parsed = load_kb_file(path, delta=args.delta, max_entries=settings.kb_max_entries)
    except KBFileError as exc:
        print(f"finsignal kb publish: {exc}", file=sys.stderr)
        return 1
    author = args.author or _default_author()

    def run(store: KBStore) -> int:
        if parsed.delta:
            version = store.apply_delta(parsed.upserts, parsed.removes, author=author, message=args.message)
        else:
            version = store.publish(parsed.entries, author=author, message=args.message)
        entries = store.load(version).entries
        _console().print(
            f"published KB version [bold]{version}[/bold] ({len(entries)} entries) in {settings.kb_namespace}"
        )
        for line in advice_lines(entries, settings.model_dir):
            print(line, file=sys.stderr)
        return 0

    return _with_store(settings, run, "publish")


def _show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)

    def run(store: KBStore) -> int:
        snapshot = store.load(args.kb_version)
        if args.json:
            _print_json(
                {
                    "version": snapshot.version,
                    "published_at": snapshot.published_at,
                    "author": snapshot.author,
                    "message": snapshot.message,
                    "entries": [e.to_dict() for e in snapshot.entries],
                }
            )
        else:
            _print_snapshot(snapshot)
        return 0

    return _with_store(settings, run, "show")


def _history(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)

    def run(store: KBStore) -> int:
        rows = store.history()
        if args.json:
            _print_json(rows)
            return 0
        current = store.current_version()
        table = Table(title=f"KB history of {settings.kb_namespace}")
        for column in ("version", "published at", "author", "action", "entries", "message"):
            table.add_column(column)
        for row in rows:
            mark = " *" if row.get("version") == current else ""
            table.add_row(
                f"{row.get('version')}{mark}",
                str(row.get("published_at", "")),
                str(row.get("author", "")),
                str(row.get("action", "")),
                str(row.get("entries", "")),
                str(row.get("message", "")),
            )
        _console().print(table)
        if not rows:
            _console().print("no KB version published yet")
        return 0

    return _with_store(settings, run, "history")


def _rollback(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)

    def run(store: KBStore) -> int:
        version = store.rollback(args.version, author=args.author or _default_author())
        _console().print(
            f"KB version [bold]{version}[/bold] now serves the content of version {args.version}"
        )
        return 0

    return _with_store(settings, run, "rollback")


def _diff(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)

    def run(store: KBStore) -> int:
        changes = store.diff(args.v1, args.v2)
        if args.json:
            _print_json(changes)
            return 0
        console = _console()
        for name, colour in (("added", "green"), ("removed", "red")):
            table = Table(title=f"{name} ({len(changes[name])})", title_style=colour)
            _entry_columns(table)
            for entry in changes[name]:
                table.add_row(*_entry_cells(entry))
            console.print(table)
        table = Table(title=f"changed ({len(changes['changed'])})", title_style="yellow")
        table.add_column("id", no_wrap=True)
        for column in ("field", f"v{args.v1}", f"v{args.v2}"):
            table.add_column(column)
        for change in changes["changed"]:
            before, after = change["before"], change["after"]
            for field in sorted(set(before) | set(after)):
                if before.get(field) != after.get(field):
                    table.add_row(change["id"], field, _short(before.get(field)), _short(after.get(field)))
        console.print(table)
        return 0

    return _with_store(settings, run, "diff")


# --- helpers ----------------------------------------------------------------------------------
def _with_store(settings: Settings, run: Callable[[KBStore], int], action: str) -> int:
    client = redis_client(settings)
    store = KBStore(
        client,
        settings.kb_namespace,
        max_entries=settings.kb_max_entries,
        keep_versions=settings.kb_keep_versions,
    )
    try:
        return run(store)
    except (KBStoreError, KBFileError) as exc:
        print(f"finsignal kb {action}: {exc}", file=sys.stderr)
        return 1
    except redis.AuthenticationError as exc:  # before ConnectionError: it is a subclass
        print(
            f"finsignal kb {action}: Redis refused the password ({exc}); "
            "set --redis-password-file / FINSIGNAL_REDIS_PASSWORD_FILE",
            file=sys.stderr,
        )
        return 1
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        print(
            f"finsignal kb {action}: cannot reach Redis at {_redacted(settings.redis_url)} ({exc}); "
            "set --redis-url / FINSIGNAL_REDIS_URL",
            file=sys.stderr,
        )
        return 1
    finally:
        client.close()


def _print_snapshot(snapshot: KBSnapshot) -> None:
    console = _console()
    table = Table(
        title=f"KB version {snapshot.version}: {len(snapshot.entries)} entries, "
        f"published {snapshot.published_at} by {snapshot.author}"
        + (f" ({snapshot.message})" if snapshot.message else "")
    )
    _entry_columns(table)
    for entry in snapshot.entries:
        table.add_row(*_entry_cells(entry.to_dict()))
    console.print(table)


def _console() -> Console:
    # Piped output (less, grep, CI logs) gets a wide page instead of rich's 80-column default.
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _entry_columns(table: Table) -> None:
    table.add_column("id", no_wrap=True)  # ids are what people copy into deltas: never wrapped
    for column in ("kind", "group"):
        table.add_column(column, no_wrap=True)
    table.add_column("topic", max_width=28)
    for column in ("sentiment", "weight"):
        table.add_column(column, no_wrap=True)
    table.add_column("text", min_width=20)


def _entry_cells(entry: dict[str, Any]) -> list[str]:
    return [
        entry["id"],
        entry["kind"],
        entry["group"],
        entry.get("topic") or "-",
        entry.get("sentiment") or "-",
        f"{entry.get('weight', 1.0):g}",
        _short(entry["text"]),
    ]


def _short(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= _TEXT_WIDTH else text[: _TEXT_WIDTH - 3] + "..."


def _print_json(value: object) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _default_author() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
