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
import datetime
import ipaddress
import socket
import ssl
import sys
from dataclasses import dataclass, field
from typing import TextIO
from urllib.parse import urlsplit

from gochat import __version__
from gochat.config import Config
from gochat.envparse import format_host_port, parse_host_port
from gochat.errors import StartupError
from gochat.logs import journal_stream
from gochat.store_checks import check_store
from gochat.tls import TlsError, load_context, off_reason

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
    check_store(config, report)
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
    from gochat.server import ChatServer  # the daemon's own binding code

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
