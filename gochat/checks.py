"""`gochat --check-config`: would the daemon start, and what would it run?

Settings were validated when the Config was built (a bad value already exits
2 with the variable's name). Here come the checks that need the machine, and
they run start-up's own code: the certificate and key load as at start
(gochat.tls), every port is bound and released again (ChatServer.bind), the
database is opened, migrated and probed with a write as at start, in a
transaction that is rolled back (a SQLite file the check had to create is
removed). No AI call is made. Beside a running daemon the check therefore
reports its ports as in use: that daemon's replacement could not start either.

Every line goes to stdout; problems are `error:` lines (exit 2), doubts are
`warning:` lines (exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import importlib
import importlib.util
import ipaddress
import os
import socket
import sqlite3
import ssl
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from gochat import __version__
from gochat.config import Config
from gochat.envparse import format_host_port, parse_host_port
from gochat.logs import journal_stream
from gochat.tls import TlsError, load_context, off_reason

DB_TIMEOUT = 5.0
"""Seconds the database may take to answer."""
CERT_EXPIRY_WARNING_DAYS = 14
FD_HEADROOM = 64
"""File descriptors beyond one per connection: listeners, the database, logs."""


@dataclass
class Report:
    lines: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def info(self, what: str, text: str) -> None:
        self.lines.append((what, text))

    def warn(self, text: str) -> None:
        self.warnings.append(text)

    def error(self, text: str) -> None:
        self.errors.append(text)

    def write(self, out: TextIO) -> None:
        out.write(f"gochat {__version__}: configuration check\n")
        for what, text in self.lines:
            out.write(f"  {what:<9} {text}\n")
        for text in self.warnings:
            out.write(f"warning: {text}\n")
        for text in self.errors:
            out.write(f"error: {text}\n")
        if self.errors:
            count = len(self.errors)
            out.write(f"{count} problem{'s' if count > 1 else ''}: gochat would not start\n")
        else:
            out.write("configuration OK\n")


def check_config(config: Config, out: TextIO | None = None) -> int:
    """Run every check, print the report; 0 when gochat would start, 2 when not."""
    report = Report()
    tls = _tls(config, report)
    _metrics(config, report)
    _listeners(config, report, tls)
    _store(config, report)
    _ai(config, report)
    _logs(config, report)
    _limits(config, report)
    report.write(out or sys.stdout)
    return 2 if report.errors else 0


# -- listeners ------------------------------------------------------------------


def _listeners(config: Config, report: Report, tls: ssl.SSLContext | None) -> None:
    try:
        socket.getaddrinfo(config.host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        report.error(f"GOCHAT_HOST={config.host!r} does not resolve: {exc.strerror}")
        return
    finally:
        report.lines.insert(0, ("plain", f"listen on {format_host_port(config.host, config.port)}"))
        if config.json_port:
            where = format_host_port(config.host, config.json_port)
            report.lines.insert(1, ("json", f"listen on {where} (docs/protocol.md)"))
    ports = [config.port, config.json_port] + (
        [config.tls_port, config.json_tls_port] if tls else []
    )
    if any(0 < port < 1024 for port in ports):
        report.warn(
            "ports below 1024 need CAP_NET_BIND_SERVICE (the contrib systemd unit grants none)"
        )
    from gochat.server import ChatServer, StartupError  # the daemon's own binding code

    try:
        asyncio.run(ChatServer(config).check_bind(tls))
    except StartupError as exc:
        report.error(str(exc))


def _tls(config: Config, report: Report) -> ssl.SSLContext | None:
    """Load the certificate and key with the daemon's own code: the context TLS would use."""
    reason = off_reason(config)
    if reason is not None:
        text, warn = reason
        report.info("tls", f"off ({text})")
        if warn:
            report.warn(f"TLS would be disabled: {text}")
        return None
    try:
        context = load_context(config)
    except TlsError as exc:
        report.info("tls", "cannot be loaded")
        report.error(str(exc))
        return None
    cert = config.tls_cert
    detail = _certificate_detail(cert, report)
    report.info("tls", f"on, port {config.tls_port} ({cert}{detail})")
    return context


def _certificate_detail(path: str, report: Report) -> str:
    """Subject and expiry when `cryptography` is around (google-auth brings it); else ''."""
    try:
        from cryptography import x509
    except ImportError:
        return ""
    try:
        with open(path, "rb") as fh:
            cert = x509.load_pem_x509_certificate(fh.read())
        expires = cert.not_valid_after_utc
        subject = cert.subject.rfc4514_string()
    except Exception:
        return ""
    left = expires - datetime.datetime.now(datetime.UTC)
    if left.total_seconds() <= 0:
        report.error(f"TLS certificate {path} expired on {expires:%Y-%m-%d}")
    elif left.days < CERT_EXPIRY_WARNING_DAYS:
        report.warn(f"TLS certificate {path} expires in {left.days} days ({expires:%Y-%m-%d})")
    return f"; {subject}, valid until {expires:%Y-%m-%d}"


# -- metrics --------------------------------------------------------------------


def _metrics(config: Config, report: Report) -> None:
    if not config.metrics_addr:
        report.info("metrics", "off")
        return
    host, port = parse_host_port(config.metrics_addr)
    address = format_host_port(host, port)
    report.info("metrics", f"http://{address}/metrics and /healthz")
    if not _is_loopback(host):
        report.warn(
            f"/metrics and /healthz are served on {host} without authentication; firewall that port"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- store ----------------------------------------------------------------------


def db_setting(config: Config) -> tuple[str, str] | None:
    """(variable, value) of the database setting, or None in a build without a store."""
    for f in dataclasses.fields(config):
        if f.metadata.get("env") == "GOCHAT_DB":
            return "GOCHAT_DB", str(getattr(config, f.name))
    return None


def _store(config: Config, report: Report) -> None:
    setting = db_setting(config)
    try:
        store = _store_module()
    except Exception as exc:
        report.info("store", "cannot be loaded")
        report.error(f"the store module failed to load: {_one_line(exc)}")
        return
    if store is not None:
        _open_store(config, store, report)
        return
    if setting is None:
        report.info("store", "none in this build (history is kept in memory)")
        return
    env, value = setting
    off = getattr(store, "NO_STORE", frozenset({"none", "off"}))
    if not value.strip() or value.strip().lower() in off:
        report.info("store", f"off ({env}={value.strip()!r}; history is kept in memory)")
        return
    store_for = getattr(store, "store_for", None)
    if callable(store_for):
        try:
            store_for(value)  # the URL's kind and the driver; nothing is opened
        except Exception as exc:
            report.info("store", _mask_password(value))
            report.error(_one_line(exc))
            return
    check_database(value, report)


def _open_store(config: Config, module: Any, report: Report) -> None:
    """Open the store as start-up does (migrations and write probe), rolled back."""
    try:
        store = module.store_for(config.db)
    except module.StoreError as exc:
        report.info("store", _mask_password(config.db))
        report.error(str(exc))
        return
    if store is None:
        report.info("store", f"off (GOCHAT_DB={config.db.strip()!r}; history is kept in memory)")
        return

    async def open_and_close() -> None:
        try:
            await store.open(check=True)
        finally:
            await store.close()

    try:
        asyncio.run(_bounded(open_and_close()))
    except module.StoreError as exc:
        report.info("store", store.description)
        report.error(str(exc))
        return
    except TimeoutError:
        report.info("store", store.description)
        report.error(f"{store.description} did not answer within {DB_TIMEOUT:g} s")
        return
    report.info("store", f"{store.description} (opened, writable)")


def _store_module() -> Any:
    """gochat.store when this build has it (it may offer `check(config)`), else None."""
    if importlib.util.find_spec("gochat.store") is None:
        return None
    return importlib.import_module("gochat.store")


def check_database(value: str, report: Report) -> None:
    """Read-only reachability: a SQLite file opens (or can be created); PostgreSQL answers.

    Nothing is created or migrated here: that is the daemon's job at start.
    """
    if value.startswith(("postgres://", "postgresql://")):
        _check_postgres(value, report)
    else:
        _check_sqlite(value, report)


async def _bounded(awaitable: Any) -> Any:
    async with asyncio.timeout(DB_TIMEOUT):
        return await awaitable


def _check_sqlite(value: str, report: Report) -> None:
    path = value.removeprefix("sqlite:///") if value.startswith("sqlite:///") else value
    if path == ":memory:":
        report.info("store", "SQLite in memory (nothing survives a restart)")
        return
    absolute = os.path.abspath(path)
    if os.path.exists(absolute):
        uri = f"file:{absolute}?mode=ro"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=DB_TIMEOUT)) as db:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            report.info("store", f"SQLite {absolute}")
            report.error(f"cannot read the database {absolute}: {exc}")
            return
        if not os.access(absolute, os.W_OK):
            report.error(f"the database {absolute} is not writable by this user")
        report.info("store", f"SQLite {absolute}")
        return
    directory = os.path.dirname(absolute)
    if not os.path.isdir(directory):
        report.error(f"the database directory {directory} does not exist")
    elif not os.access(directory, os.W_OK | os.X_OK):
        report.error(f"cannot create {absolute}: {directory} is not writable by this user")
    report.info("store", f"SQLite {absolute} (created on first start)")


def _check_postgres(url: str, report: Report) -> None:
    shown = _mask_password(url)
    try:
        import psycopg
    except ImportError:
        _check_postgres_port(url, report)
        return
    try:
        with psycopg.connect(
            url, connect_timeout=int(DB_TIMEOUT), application_name="gochat --check-config"
        ) as conn:
            conn.execute("SELECT 1").fetchone()
    except psycopg.Error as exc:
        report.info("store", f"PostgreSQL {shown}")
        detail = _one_line(exc)
        password = urlsplit(url).password
        if password:
            detail = detail.replace(password, "***")
        report.error(f"cannot connect to PostgreSQL {shown}: {detail}")
        return
    report.info("store", f"PostgreSQL {shown} (connected)")


def _check_postgres_port(url: str, report: Report) -> None:
    """Without psycopg the daemon cannot use PostgreSQL at all; still say if the port answers."""
    parts = urlsplit(url)
    shown = _mask_password(url)
    report.warn("psycopg is not installed: pip install 'gochat[postgres]'")
    host = parts.hostname or ""
    try:
        port = parts.port or 5432
    except ValueError:
        report.info("store", f"PostgreSQL {shown}")
        report.error("GOCHAT_DB has an invalid port")
        return
    if not host or host.startswith("/"):
        report.info("store", f"PostgreSQL {shown} (Unix socket; not checked here)")
        return
    try:
        with socket.create_connection((host, port), timeout=DB_TIMEOUT):
            pass
    except OSError as exc:
        report.info("store", f"PostgreSQL {shown}")
        report.error(f"cannot reach PostgreSQL at {host}:{port}: {exc.strerror or exc}")
        return
    report.info("store", f"PostgreSQL {shown} (port reachable)")


def _mask_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


# -- AI, logs, limits -----------------------------------------------------------


def _ai(config: Config, report: Report) -> None:
    key = getattr(config, "ai_api_key", "")
    if not key:
        report.info("ai", "off (no GEMINI_API_KEY or GOOGLE_API_KEY)")
        return
    model = getattr(config, "ai_model", "?")
    base = getattr(config, "ai_base_url", "")
    via = f" via {urlsplit(base).hostname or base}" if base else ""
    report.info("ai", f"on (model {model}{via}; not called by this check)")


def _logs(config: Config, report: Report) -> None:
    fmt = getattr(config, "log_format", "text")
    journal = ", with journald priorities" if journal_stream(sys.stderr) else ""
    report.info("logs", f"{config.log_level}, {fmt} on stderr{journal}")


def _limits(config: Config, report: Report) -> None:
    report.info(
        "limits",
        f"{config.max_connections or 'unlimited'} connections, "
        f"{config.max_conn_per_ip or 'unlimited'} per IP",
    )
    try:
        import resource
    except ImportError:
        return
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = config.max_connections + FD_HEADROOM
    if config.max_connections and soft != resource.RLIM_INFINITY and soft < wanted:
        report.warn(
            f"open-file limit is {soft}, below GOCHAT_MAX_CONNECTIONS={config.max_connections} "
            f"plus headroom; raise it (LimitNOFILE= in the unit, ulimit -n, or --ulimit nofile)"
        )
