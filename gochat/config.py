"""Every limit, port, path and timeout of the daemon, in one frozen object.

Each field carries its environment variable, its command-line flag (if it has
one) and a one-line help in its metadata, so `gochat --help`, `.env.example`,
README's settings table and the validation errors all come from this file
(how a value is read and checked is `gochat.envparse`).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gochat.envparse import (
    ConfigError,
    check_timezone,
    format_host_port,
    parse_host_port,
    read_settings,
    setting,
)

# ConfigError is what Config.from_env raises, so callers catch it from here;
# gochat/listeners.py imports the host:port helpers from here.
__all__ = ["Config", "ConfigError", "format_host_port", "parse_host_port", "settings"]


@dataclass(frozen=True, slots=True)
class Config:
    """The daemon's settings. Defaults are what runs on a fresh machine."""

    host: str = setting("0.0.0.0", "GOCHAT_HOST", "address to listen on", flag="--host")
    port: int = setting(8080, "GOCHAT_PORT", "plain-text TCP port (0 = any)", flag="--port")
    tls_port: int = setting(
        8443, "GOCHAT_TLS_PORT", "TLS port, used when the cert and key exist", flag="--tls-port"
    )
    json_port: int = setting(
        8081,
        "GOCHAT_JSON_PORT",
        "JSON-lines port for bots and programs, docs/protocol.md (0 = off)",
        flag="--json-port",
    )
    json_tls_port: int = setting(
        8444,
        "GOCHAT_JSON_TLS_PORT",
        "JSON lines over TLS, used when the cert and key exist (0 = off)",
    )
    tls_cert: str = setting(
        "certs/server.crt",
        "GOCHAT_TLS_CERT",
        "TLS certificate (PEM); none = TLS off. Set but missing or not matching the key: "
        "gochat does not start",
        flag="--tls-cert",
    )
    tls_key: str = setting(
        "certs/server.key", "GOCHAT_TLS_KEY", "TLS private key (PEM)", flag="--tls-key"
    )
    tls_handshake_timeout: float = setting(
        10.0, "GOCHAT_TLS_HANDSHAKE_TIMEOUT", "seconds a TLS handshake may take", minimum=0.1
    )
    name_timeout: float = setting(
        60.0, "GOCHAT_NAME_TIMEOUT", "seconds to choose a name before disconnect", minimum=0.1
    )
    idle_timeout: float = setting(
        600.0, "GOCHAT_IDLE_TIMEOUT", "seconds of silence before disconnect", minimum=0.1
    )
    shutdown_grace: float = setting(
        5.0, "GOCHAT_SHUTDOWN_GRACE", "seconds output may drain at shutdown", minimum=0.0
    )
    max_conn_per_ip: int = setting(
        10, "GOCHAT_MAX_CONN_PER_IP", "connections per IP, IPv6 per /64 (0 = unlimited)", minimum=0
    )
    max_connections: int = setting(
        10000, "GOCHAT_MAX_CONNECTIONS", "connections in total (0 = unlimited)", minimum=0
    )
    rate_messages: int = setting(
        5, "GOCHAT_RATE_MESSAGES", "messages per window per user (0 = no limit)", minimum=0
    )
    rate_window: float = setting(
        10.0, "GOCHAT_RATE_WINDOW", "rate-limit window in seconds", minimum=0.1
    )
    flood_factor: int = setting(
        20,
        "GOCHAT_FLOOD_FACTOR",
        "a client refused more than this many times GOCHAT_RATE_MESSAGES lines in one window "
        "is disconnected for flooding (a paste's excess is only refused)",
        minimum=1,
    )
    max_message: int = setting(1000, "GOCHAT_MAX_MESSAGE", "characters in one message", minimum=1)
    max_line_bytes: int = setting(
        8192, "GOCHAT_MAX_LINE_BYTES", "bytes in one raw input line", minimum=64
    )
    sendq_bytes: int = setting(
        262144,
        "GOCHAT_SENDQ_BYTES",
        "chat lines a slow reader may have waiting before its oldest are skipped (soft cap)",
        minimum=1024,
    )
    sendq_hard: int = setting(
        4 * 1024 * 1024,
        "GOCHAT_SENDQ_HARD",
        "unsent output past which a reader is dropped (hard cap; at least 256 KiB)",
        minimum=262144,
    )
    stall_timeout: float = setting(
        15.0,
        "GOCHAT_STALL_TIMEOUT",
        "seconds a reader may take nothing while output waits before it is dropped",
        minimum=0.1,
    )
    output_budget: int = setting(
        256 * 1024 * 1024,
        "GOCHAT_OUTPUT_BUDGET",
        "bytes waiting for all readers together; past it the largest backlogs are trimmed",
        minimum=65536,
    )
    presence_batch: int = setting(
        5,
        "GOCHAT_PRESENCE_BATCH",
        "arrivals and departures in one lobby at once past which members get one line for all",
        minimum=1,
    )
    socket_sndbuf: int = setting(
        0,
        "GOCHAT_SOCKET_SNDBUF",
        "kernel send buffer per connection in bytes (0 = the kernel's own, autotuned)",
        minimum=0,
    )
    replay_minutes: float = setting(
        10.0, "GOCHAT_REPLAY_MINUTES", "history replayed on login/join, in minutes", minimum=0
    )
    replay_max: int = setting(
        50, "GOCHAT_REPLAY_MAX", "most messages replayed on login/join", minimum=0
    )
    lobby_idle_minutes: float = setting(
        120.0,
        "GOCHAT_LOBBY_IDLE_MINUTES",
        "an empty lobby is removed after this many idle minutes",
        minimum=0,
    )
    bcrypt_rounds: int = setting(
        12, "GOCHAT_BCRYPT_ROUNDS", "bcrypt cost for lobby passwords (4-16)", minimum=4
    )
    color: str = setting(
        "auto",
        "GOCHAT_COLOR",
        "ANSI colour default: auto (on unless NO_COLOR is set), always, never",
        choices=("auto", "always", "never"),
    )
    timezone: str = setting(
        "",
        "GOCHAT_TIMEZONE",
        "timezone of the times shown in chat, e.g. Europe/Paris or UTC (empty = the system's)",
        parse=check_timezone,
    )
    log_level: str = setting(
        "INFO",
        "GOCHAT_LOG_LEVEL",
        "log level (the Gemini SDK's and httpx's own INFO lines show only at DEBUG)",
        flag="--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    no_color: bool = setting(
        False, "NO_COLOR", "any non-empty value turns colour off by default (no-color.org)"
    )
    ai_api_key: str = setting(
        "",
        "GEMINI_API_KEY",
        "Gemini API key for Rox (or GOOGLE_API_KEY); AI is off without one",
        secret=True,
        fallback_env="GOOGLE_API_KEY",
    )
    ai_model: str = setting(
        "gemini-3.8-flash", "GOCHAT_AI_MODEL", "Gemini model Rox uses (model names retire)"
    )
    ai_base_url: str = setting(
        "", "GOCHAT_AI_BASE_URL", "Gemini API base URL for a proxy or gateway (empty = Google's)"
    )
    ai_timeout: float = setting(
        30.0, "GOCHAT_AI_TIMEOUT", "seconds one AI answer may take", minimum=0.1
    )
    ai_max_output_tokens: int = setting(
        2048,
        "GOCHAT_AI_MAX_OUTPUT_TOKENS",
        "output token cap per AI answer (thinking tokens count too)",
        minimum=16,
    )
    ai_concurrency: int = setting(
        4, "GOCHAT_AI_CONCURRENCY", "AI calls in flight server-wide", minimum=1
    )
    ai_queue: int = setting(
        20, "GOCHAT_AI_QUEUE", "AI questions that may wait for a free call slot", minimum=0
    )
    ai_context_lines: int = setting(
        10, "GOCHAT_AI_CONTEXT_LINES", "recent lobby lines sent with each question", minimum=0
    )
    ai_history_turns: int = setting(
        20,
        "GOCHAT_AI_HISTORY_TURNS",
        "turns Rox remembers per lobby (a question is one turn, its answer another)",
        minimum=0,
    )
    ai_history_minutes: float = setting(
        30.0,
        "GOCHAT_AI_HISTORY_MINUTES",
        "a lobby's AI conversation resets after this many minutes without questions",
        minimum=0,
    )
    # -- operator kit: metrics endpoint and log format --
    metrics_addr: str = setting(
        "",
        "GOCHAT_METRICS_ADDR",
        "HTTP address for /healthz and /metrics, e.g. 127.0.0.1:9100; a bare port binds "
        "127.0.0.1 (empty = off)",
        parse=lambda raw: format_host_port(*parse_host_port(raw)),
    )
    log_format: str = setting(
        "text",
        "GOCHAT_LOG_FORMAT",
        "log line format: text, or json (one object per line)",
        choices=("text", "json"),
    )
    event_loop: str = setting(
        "auto",
        "GOCHAT_EVENT_LOOP",
        "event loop: auto (uvloop when installed, as with gochat[fast]), asyncio or uvloop",
        choices=("auto", "asyncio", "uvloop"),
    )
    # -- store: lobbies and history that survive restarts --
    db: str = setting(
        "gochat.db",
        "GOCHAT_DB",
        "history store: SQLite file path or sqlite:///path, postgresql://... URL, "
        "or none (memory only)",
        flag="--db",
    )
    store_dms: bool = setting(False, "GOCHAT_STORE_DMS", "also store direct messages")
    flush_ms: int = setting(
        100,
        "GOCHAT_FLUSH_MS",
        "milliseconds between store commits; a crash loses at most this window",
        minimum=1,
    )
    store_queue_max: int = setting(
        100000,
        "GOCHAT_STORE_QUEUE_MAX",
        "writes held while the store is slow or down; past it the oldest messages are dropped",
        minimum=100,
    )
    store_close_timeout: float = setting(
        10.0,
        "GOCHAT_STORE_CLOSE_TIMEOUT",
        "seconds shutdown waits for the last store writes",
        minimum=0.1,
    )
    history_max: int = setting(
        10000, "GOCHAT_HISTORY_MAX", "messages kept per lobby in the store (0 = no cap)", minimum=0
    )
    history_days: float = setting(
        0.0, "GOCHAT_HISTORY_DAYS", "days messages are kept in the store (0 = forever)", minimum=0
    )
    # -- not a setting: which of the above the operator gave (environment, .env or flag)
    explicit: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @property
    def zone(self) -> datetime.tzinfo | None:
        """GOCHAT_TIMEZONE as a tzinfo; None means the system's local time."""
        if not self.timezone:
            return None
        if self.timezone.upper() == "UTC":
            return datetime.UTC
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def color_default(self) -> bool:
        """Whether a new connection starts with ANSI colour."""
        if self.color == "always":
            return True
        if self.color == "never":
            return False
        return not self.no_color

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Config:
        """Read GOCHAT_* variables, apply flag overrides, validate; raise ConfigError."""
        values, given = read_settings(_FIELDS, os.environ if env is None else env, overrides)
        config = cls(**values, explicit=frozenset(given))
        _check_ranges(config)
        return config


_SETTINGS = tuple(f for f in dataclasses.fields(Config) if "env" in f.metadata)
"""The fields that are settings (`explicit` is bookkeeping, not a setting)."""
_FIELDS = {f.name: f for f in _SETTINGS}


def _check_ranges(config: Config) -> None:
    for f in _SETTINGS:
        minimum = f.metadata["minimum"]
        value = getattr(config, f.name)
        if minimum is not None and value < minimum:
            raise ConfigError(f"{f.metadata['env']}={value}: must be at least {minimum:g}")
    for name in ("port", "tls_port", "json_port", "json_tls_port"):
        value = getattr(config, name)
        if not 0 <= value <= 65535:
            raise ConfigError(f"{_FIELDS[name].metadata['env']}={value}: not a TCP port")
    if config.bcrypt_rounds > 16:
        raise ConfigError(f"GOCHAT_BCRYPT_ROUNDS={config.bcrypt_rounds}: at most 16")


def settings() -> Iterator[tuple[dataclasses.Field[Any], str]]:
    """Every setting with its default as written in an env file, for --help, .env and README."""
    defaults = Config()
    for f in _SETTINGS:
        value = getattr(defaults, f.name)
        if f.metadata.get("secret") or f.name == "no_color":
            shown = ""
        elif isinstance(value, bool):
            shown = "1" if value else "0"
        else:
            shown = str(value)
        yield f, shown
