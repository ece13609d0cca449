"""One setting: how it is declared, and how its text becomes a typed value.

A `Config` field is declared with `setting()`, whose metadata names its
variable, flag, parser and bounds; `read_settings` reads those fields from
the environment and the command-line flags (given as text too), so every
setting is parsed, and every bad value worded, the same way. What the
settings are, their defaults and the checks across them stay in
`gochat.config`.
"""

from __future__ import annotations

import dataclasses
import math
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """A setting has a value we cannot run with; the message names the setting."""


def setting(
    default: Any,
    env: str,
    help: str,
    *,
    flag: str | None = None,
    parse: Callable[[str], Any] | None = None,
    minimum: float | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
    fallback_env: str | None = None,
) -> Any:
    """A dataclass field that carries its variable, flag, help and checks in its metadata.

    Declared next to the field, these feed `gochat --help`, `.env.example`,
    README's table and the error messages, so none of them can drift apart.
    """
    return field(
        default=default,
        repr=not secret,
        metadata={
            "env": env,
            "help": help,
            "flag": flag,
            "parse": parse,
            "minimum": minimum,
            "choices": choices,
            "secret": secret,
            "fallback_env": fallback_env,
        },
    )


def check_timezone(raw: str) -> str:
    """An IANA name (Europe/Paris), UTC, or empty for the system's zone."""
    if raw and raw.upper() != "UTC":
        try:
            zoneinfo.ZoneInfo(raw)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a timezone name such as Europe/Paris or UTC") from None
    return raw


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def read_settings(
    fields: Mapping[str, dataclasses.Field[Any]],
    env: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], set[str]]:
    """The values `env` and the flag `overrides` give, by field name, and which were given."""
    values: dict[str, Any] = {}
    given: set[str] = set()
    for f in fields.values():
        meta = f.metadata
        raw = env.get(meta["env"])
        if (raw is None or not raw.strip()) and meta["fallback_env"]:
            raw = env.get(meta["fallback_env"])
        if f.name == "no_color":
            values[f.name] = bool(raw)
            continue
        if raw is not None and raw.strip() != "":
            values[f.name] = convert(f, raw.strip())
            given.add(f.name)
    for name, value in (overrides or {}).items():
        if value is not None:
            f = fields[name]
            values[name] = convert(f, str(value))
            given.add(name)
    return values, given


def convert(f: dataclasses.Field[Any], raw: str) -> Any:
    """Every setting's text goes through here, so a bad value always reads `VAR='raw': why`."""
    meta = f.metadata
    try:
        if meta["parse"] is not None:
            return meta["parse"](raw)
        if f.type in ("bool", bool):
            return parse_bool(raw)
        if f.type in ("int", int):
            return int(raw)
        if f.type in ("float", float):
            number = float(raw)
            if not math.isfinite(number):  # nan slips past every `minimum` comparison
                raise ValueError("not a finite number")
            return number
        if meta["choices"]:
            value = raw.upper() if f.name == "log_level" else raw.lower()
            if value not in meta["choices"]:
                raise ValueError("expected one of " + ", ".join(meta["choices"]))
            return value
        return raw
    except ValueError as exc:
        raise ConfigError(f"{meta['env']}={raw!r}: {_reason(exc)}") from None


def _reason(exc: ValueError) -> str:
    text = str(exc)
    if text.startswith("invalid literal") or text.startswith("could not convert"):
        return "not a number"
    return text


def parse_host_port(raw: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'9100', ':9100', 'host:9100' or '[::1]:9100' -> (host, port); no host means loopback."""
    text = raw.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets, e.g. [::1]:9100")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError("expected [host:]port, e.g. 127.0.0.1:9100") from None
    if not 0 <= port <= 65535:
        raise ValueError("not a TCP port")
    return host or default_host, port


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
