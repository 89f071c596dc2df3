"""`finsignal` command line (also `python -m worker`).

Sub-commands live in their own modules and register themselves through a ``register(subparsers)``
function listed in ``COMMAND_MODULES``. Settings flags are generated from ``worker.config.Settings``
so every flag has its ``FINSIGNAL_*`` environment variable and the help text cannot drift.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import SecretStr

from worker.config import ENV_PREFIX, ConfigError, Settings, load_settings

# module path -> each defines register(subparsers: argparse._SubParsersAction) -> None
COMMAND_MODULES: tuple[str, ...] = (
    "worker.commands.run",
    "worker.commands.demo",
    "worker.commands.replay",
    "kb_sync.cli",
    "worker.model_build.cli",
    "worker.alerts.cli",
    "worker.bench_cli",
)

Handler = Callable[[argparse.Namespace], int]

# The settings every command that talks to Kafka needs: broker address and security (SASL/SSL).
KAFKA_CONNECTION_SETTINGS: tuple[str, ...] = (
    "kafka_bootstrap",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "sasl_password_file",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
)


def add_settings_flags(parser: argparse.ArgumentParser, only: Iterable[str] | None = None) -> None:
    """Add one ``--flag`` per Settings field (default None so env/defaults apply when absent)."""
    wanted = set(only) if only is not None else None
    group = parser.add_argument_group("settings (each also read from FINSIGNAL_<NAME>)")
    for name, field in Settings.model_fields.items():
        if wanted is not None and name not in wanted:
            continue
        flag = "--" + name.replace("_", "-")
        env = ENV_PREFIX + name.upper()
        default = field.default
        shown = "***" if isinstance(default, SecretStr) else default
        help_text = f"{field.description} [env {env}; default {shown}]"
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        annotation = field.annotation
        choices = _literal_choices(annotation)
        if choices:
            kwargs["choices"] = choices
        elif annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        group.add_argument(flag, **kwargs)


def positive_int(value: str) -> int:
    """argparse ``type`` for counts that must be 1 or more (the error names the flag)."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return number


def _literal_choices(annotation: Any) -> list[str] | None:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in args]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in args:
            inner = _literal_choices(arg)
            if inner:
                return inner
    return None


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in Settings.model_fields}
    return load_settings(**overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finsignal",
        description="Streaming financial sentiment monitoring on Kafka with an expert knowledge base.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        module = import_optional(module_name)
        if module is not None:
            module.register(subparsers)
    return parser


def import_optional(module_name: str) -> types.ModuleType | None:
    """Import a command module; None when the module itself does not exist (yet).

    A missing dependency *inside* an existing module (e.g. torch) still raises, so a broken
    install is reported rather than hidden.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", None) or "INFO",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"finsignal: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
