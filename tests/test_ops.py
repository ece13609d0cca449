"""Operator kit: /healthz and /metrics over real HTTP, --check-config, log formats,
the systemd unit, the Dockerfile's healthcheck and the compose file."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import gochat.metrics
from gochat.checks import Report
from gochat.config import Config, ConfigError
from gochat.logs import setup_logging
from gochat.stats import DurationHistogram
from gochat.store_checks import check_database

from .conftest import ROOT, ChatClient, free_port, pg_test_url, wait_until
from .http_client import get, http, value
from .test_tls import one_error_line, run_gochat

METRICS = "127.0.0.1:0"


# -- /healthz and /metrics ---------------------------------------------------------


async def test_healthz_reports_status_as_json(make_server):
    """GET /healthz: 200, application/json, Connection: close, the documented fields."""
    server = await make_server(metrics_addr=METRICS)
    response = await get(server.ports["metrics"], "/healthz")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["connection"] == "close"
    assert int(response.headers["content-length"]) == len(response.body)
    health = response.json()
    assert health["status"] == "ok"
    assert health["uptime_seconds"] >= 0
    assert (health["connections"], health["clients"], health["lobbies"]) == (0, 0, 1)
    assert health["store"] == {"state": "off"}  # the test server runs with GOCHAT_DB=none
    assert health["ai"]["state"] == "disabled"


async def test_metrics_content_type_and_names(make_server):
    """GET /metrics: Prometheus text format with every documented family, no user labels."""
    server = await make_server(metrics_addr=METRICS)
    response = await get(server.ports["metrics"], "/metrics")
    assert response.status == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    text = response.body.decode()
    for name in (
        "gochat_connections",
        "gochat_clients",
        "gochat_lobbies",
        "gochat_uptime_seconds",
        "gochat_connections_accepted_total",
        "gochat_connections_refused_total",
        "gochat_logins_total",
        "gochat_messages_total",
        "gochat_deliveries_total",
        "gochat_rate_limited_total",
        "gochat_flood_disconnects_total",
        "gochat_sendq_disconnects_total",
        "gochat_disconnects_total",
        "gochat_ai_requests_total",
        "gochat_ai_request_duration_seconds",
        "gochat_ai_in_flight",
        "gochat_store_queue_depth",
        "gochat_store_last_flush_seconds",
        "gochat_store_flush_duration_seconds",
        "gochat_store_up",
        "gochat_store_writes_total",
        "gochat_store_dropped_total",
        "process_open_fds",
    ):
        assert re.search(rf"^# TYPE {name}\b", text, re.M) or f"\n{name}" in text, name
    labels = set(re.findall(r"\{(\w+)=", text))
    assert labels <= {
        "listener",
        "reason",
        "outcome",
        "le",
        "version",
        "implementation",
        "major",
        "minor",
        "patchlevel",
        "generation",
    }
    assert value(response.samples(), "gochat_connections", listener="plain") == 0


async def test_counters_move_after_two_clients_chat(make_server):
    """Logins, messages, deliveries and the connection gauge follow real chat."""
    server = await make_server(metrics_addr=METRICS)
    port = server.ports["metrics"]
    alice = await ChatClient.connect(server.ports["plain"])
    bob = await ChatClient.connect(server.ports["plain"])
    try:
        await alice.login("alice")
        await bob.login("bob")
        await alice.send("hello from the metrics test")
        await bob.expect("hello from the metrics test")
        samples = (await get(port, "/metrics")).samples()
        assert value(samples, "gochat_logins_total") == 2
        assert value(samples, "gochat_messages_total") == 1
        assert value(samples, "gochat_deliveries_total") == 2  # to alice and to bob
        assert value(samples, "gochat_connections_accepted_total") == 2
        assert value(samples, "gochat_connections", listener="plain") == 2
        assert value(samples, "gochat_clients") == 2
        health = (await get(port, "/healthz")).json()
        assert (health["connections"], health["clients"]) == (2, 2)
        await bob.send("/quit")
        await bob.read_until_closed()
        await wait_until(lambda: len(server.sessions) == 1, what="bob's session to end")
        samples = (await get(port, "/metrics")).samples()
        assert value(samples, "gochat_disconnects_total", reason="quit") == 1
        assert value(samples, "gochat_connections", listener="plain") == 1
    finally:
        await alice.close()
        await bob.close()


async def test_real_store_flushes_are_exported(make_server, tmp_path):
    """With a SQLite store, chat makes the journal commit and /metrics shows the flushes."""
    server = await make_server(metrics_addr=METRICS, db=str(tmp_path / "m.db"), flush_ms=10)
    client = await ChatClient.connect(server.ports["plain"])
    try:
        await client.login("dora")
        await client.send("persist me")
        await client.expect("persist me")
        await wait_until(lambda: server.journal.commits > 0, what="a store commit")
        samples = (await get(server.ports["metrics"], "/metrics")).samples()
        assert value(samples, "gochat_store_flush_duration_seconds_count") >= 1
        assert value(samples, "gochat_store_up") == 1
        assert value(samples, "gochat_store_flush_errors_total") == 0
    finally:
        await client.close()


async def test_servers_do_not_share_metrics(make_server):
    """Each server has its own registry: chat on one leaves the other's counters alone."""
    busy = await make_server(metrics_addr=METRICS)
    idle = await make_server(metrics_addr=METRICS)
    client = await ChatClient.connect(busy.ports["plain"])
    try:
        await client.login("carol")
        busy_samples = (await get(busy.ports["metrics"], "/metrics")).samples()
        idle_samples = (await get(idle.ports["metrics"], "/metrics")).samples()
        assert value(busy_samples, "gochat_logins_total") == 1
        assert value(idle_samples, "gochat_logins_total") == 0
    finally:
        await client.close()


async def test_http_errors_and_head(make_server):
    """404 elsewhere, 405 with Allow for POST, 400 for garbage, HEAD has no body."""
    server = await make_server(metrics_addr=METRICS)
    port = server.ports["metrics"]
    assert (await get(port, "/nope")).status == 404
    posted = await get(port, "/metrics", method="POST")
    assert posted.status == 405
    assert posted.headers["allow"] == "GET, HEAD"
    assert (await http(port, b"hello\r\n\r\n")).status == 400
    assert (await get(port, "/healthz?verbose=1")).status == 200
    head = await get(port, "/healthz", method="HEAD")
    assert head.status == 200 and head.body == b""
    assert int(head.headers["content-length"]) > 0


async def test_oversized_request_is_refused(make_server):
    """A request head past the bound gets 431 and a close, not an unbounded buffer."""
    server = await make_server(metrics_addr=METRICS)
    port = server.ports["metrics"]
    long_line = b"GET /healthz HTTP/1.1\r\nX-Junk: " + b"a" * 20000 + b"\r\n\r\n"
    assert (await http(port, long_line)).status == 431
    many = b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n"
    assert (await http(port, many)).status == 431


async def test_silent_client_times_out(make_server, monkeypatch):
    """A client that never finishes its request gets 408 and a close after the read timeout."""
    monkeypatch.setattr(gochat.metrics, "READ_TIMEOUT", 0.2)
    server = await make_server(metrics_addr=METRICS)
    response = await http(server.ports["metrics"], b"GET /healthz HTTP/1.1\r\n")
    assert response.status == 408


async def test_stdlib_client_reads_healthz(make_server):
    """urllib (what the container's HEALTHCHECK uses) gets 200 and the JSON."""
    server = await make_server(metrics_addr=METRICS)
    url = f"http://127.0.0.1:{server.ports['metrics']}/healthz"

    def fetch():
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())

    status, body = await asyncio.to_thread(fetch)
    assert status == 200 and body["status"] == "ok"


async def test_metrics_off_by_default(make_server):
    """Without GOCHAT_METRICS_ADDR nothing extra listens."""
    server = await make_server()
    assert "metrics" not in server.ports
    assert server.metrics is None


async def test_metrics_stop_at_shutdown(make_server):
    """Shutdown closes the metrics listener too."""
    server = await make_server(metrics_addr=METRICS)
    port = server.ports["metrics"]
    await server.shutdown()
    with pytest.raises(OSError):
        await get(port, "/healthz")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9100", "127.0.0.1:9100"),
        (":9100", "127.0.0.1:9100"),
        ("0.0.0.0:9100", "0.0.0.0:9100"),
        ("[::1]:9100", "[::1]:9100"),
        ("localhost:0", "localhost:0"),
    ],
)
def test_metrics_addr_defaults_to_loopback(raw, expected):
    """A bare port binds loopback; any other host has to be written out."""
    assert Config.from_env({"GOCHAT_METRICS_ADDR": raw}).metrics_addr == expected
    assert Config.from_env({}).metrics_addr == ""


@pytest.mark.parametrize("raw", ["abc", "host:", "1:2:3:9100", "70000", "host:-1"])
def test_bad_metrics_addr_names_the_setting(raw):
    with pytest.raises(ConfigError, match="GOCHAT_METRICS_ADDR"):
        Config.from_env({"GOCHAT_METRICS_ADDR": raw})


def test_duration_histogram_buckets_are_inclusive():
    """An observation equal to a bound lands in that bound's bucket (Prometheus `le`)."""
    hist = DurationHistogram((0.1, 1.0))
    for seconds in (0.1, 0.5, 1.0, 3.0):
        hist.observe(seconds)
    assert hist.counts == [1, 2, 1]
    assert hist.count == 4 and hist.sum == pytest.approx(4.6)


# -- gochat --check-config -------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment minus gochat's settings; gochat imported from this tree
    (in a temporary working directory `python -m gochat` would find an installed copy)."""
    skip = ("GOCHAT_", "GEMINI_", "GOOGLE_API_KEY", "JOURNAL_STREAM", "NO_COLOR")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = ROOT + (os.pathsep + path if path else "")
    env.update(GOCHAT_JSON_PORT="0", GOCHAT_JSON_TLS_PORT="0")  # off unless a test asks
    env.update(extra)
    return env


def check_config(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """`gochat --check-config` in `tmp_path` (no certs/ there: TLS off unless set).

    Loopback and port 0 unless a test says otherwise: the check binds for real."""
    defaults = {
        "GOCHAT_HOST": "127.0.0.1",
        "GOCHAT_PORT": "0",
        "GOCHAT_TLS_PORT": "0",
        "GOCHAT_JSON_PORT": "0",
        "GOCHAT_JSON_TLS_PORT": "0",
    }
    env = clean_env(**{**defaults, **settings})
    return subprocess.run(
        [sys.executable, "-m", "gochat", "--env-file", os.devnull, "--check-config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def make_certificate(directory: Path, days: int = 30) -> tuple[Path, Path]:
    """A self-signed certificate made with `cryptography` (google-auth depends on it)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chat.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_check_config_good(tmp_path):
    """Settings that work pass: exit 0, and the report says what would run."""
    result = check_config(tmp_path, GOCHAT_METRICS_ADDR="0")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "plain     listen on 127.0.0.1:0" in out
    assert "tls       off" in out
    assert "metrics   http://127.0.0.1:0/metrics" in out
    assert "ai        off" in out
    assert "store" in out
    assert out.rstrip().endswith("configuration OK")


def test_check_config_with_certificate(tmp_path):
    """A real certificate and key load: TLS on, with subject and expiry shown."""
    cert, key = make_certificate(tmp_path)
    result = check_config(tmp_path, GOCHAT_TLS_CERT=str(cert), GOCHAT_TLS_KEY=str(key))
    assert result.returncode == 0, result.stdout
    assert "tls       on, port 0" in result.stdout
    assert "CN=chat.test" in result.stdout


def test_check_config_expiring_certificate_warns(tmp_path):
    cert, key = make_certificate(tmp_path, days=3)
    result = check_config(tmp_path, GOCHAT_TLS_CERT=str(cert), GOCHAT_TLS_KEY=str(key))
    assert result.returncode == 0
    assert "warning: TLS certificate" in result.stdout and "expires in" in result.stdout


def test_check_config_bad_port(tmp_path):
    """An impossible port: exit 2 naming the variable."""
    result = check_config(tmp_path, GOCHAT_PORT="70000")
    assert result.returncode == 2
    assert "GOCHAT_PORT" in result.stderr


def test_check_config_garbage_certificate(tmp_path):
    """Files that exist but are not PEM: exit 2, the server would refuse to start."""
    (tmp_path / "bad.crt").write_text("not a certificate\n")
    (tmp_path / "bad.key").write_text("not a key\n")
    result = check_config(
        tmp_path,
        GOCHAT_TLS_CERT=str(tmp_path / "bad.crt"),
        GOCHAT_TLS_KEY=str(tmp_path / "bad.key"),
    )
    assert result.returncode == 2, result.stdout
    assert f"error: GOCHAT_TLS_CERT={tmp_path / 'bad.crt'}: not a PEM certificate" in result.stdout
    assert "gochat would not start" in result.stdout


def test_check_config_half_tls_warns(tmp_path):
    """The default certificate without its key: TLS would be off; a warning, not a failure.
    (Named by the operator, the missing key is an error: see test_tls.py.)"""
    (tmp_path / "certs").mkdir()
    _cert, key = make_certificate(tmp_path / "certs")
    key.unlink()
    result = check_config(tmp_path)
    assert result.returncode == 0, result.stdout
    assert "warning: TLS would be disabled: certs/server.key is missing" in result.stdout


def test_check_config_port_collision(tmp_path):
    """The metrics port may not be a chat port."""
    port = str(free_port())
    result = check_config(tmp_path, GOCHAT_PORT=port, GOCHAT_METRICS_ADDR=port)
    assert result.returncode == 2
    assert "also a chat port" in result.stdout


def test_check_config_unresolvable_host(tmp_path):
    result = check_config(tmp_path, GOCHAT_HOST="no-such-host.invalid")
    assert result.returncode == 2
    assert "does not resolve" in result.stdout


def test_database_checks_without_the_store(tmp_path):
    """The fallback database checks: SQLite readable or creatable; PostgreSQL port reachable."""
    report = Report()
    check_database(str(tmp_path / "new.db"), report)
    assert not report.errors and "created on first start" in report.lines[-1][1]

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    report = Report()
    check_database(str(garbage), report)
    assert report.errors and "cannot read the database" in report.errors[0]

    report = Report()
    check_database(str(tmp_path / "missing" / "dir" / "x.db"), report)
    assert report.errors and "does not exist" in report.errors[0]

    closed = free_port()
    report = Report()
    check_database(f"postgresql://gochat:s3cret@127.0.0.1:{closed}/gochat", report)
    assert report.errors and "PostgreSQL" in report.errors[0]
    assert str(closed) in report.errors[0]
    shown = report.lines[-1][1] + " ".join(report.errors)
    assert "s3cret" not in shown and "***" in shown


def test_database_check_connects_to_a_live_postgres():
    """With PostgreSQL running (scripts/test provisions it) the check really connects."""
    url = pg_test_url()
    report = Report()
    check_database(url, report)
    assert not report.errors and "(connected)" in report.lines[-1][1]


# -- logs ----------------------------------------------------------------------------


@pytest.fixture
def root_logging():
    """Put the root logger back as it was after a test reconfigures it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def log_sample(logger_name: str = "gochat.test") -> None:
    log = logging.getLogger(logger_name)
    log.info("plain line from %s", "alice\x1b[2J")
    try:
        raise RuntimeError("boom \x1b]0;title\x07")
    except RuntimeError:
        log.exception("it failed")


def test_json_log_format(tmp_path, root_logging, monkeypatch):
    """GOCHAT_LOG_FORMAT=json: one object per line with ts, level, logger, msg, exc."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream)
    log_sample()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"ts", "level", "logger", "msg"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert (first["level"], first["logger"]) == ("INFO", "gochat.test")
    assert first["msg"] == "plain line from alice"  # the escape sequence is gone
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exc"]
    assert "\x1b" not in second["exc"] and "Traceback" in second["exc"]


def test_journal_stream_gets_priorities(tmp_path, root_logging, monkeypatch):
    """Under systemd every line, traceback lines too, starts with <N>; no timestamp."""
    path = tmp_path / "stderr"
    with open(path, "w", encoding="utf-8") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        setup_logging("DEBUG", "text", stream=stream)
        log_sample()
        logging.getLogger("gochat.test").warning("careful")
        logging.getLogger("gochat.test").debug("detail")
    lines = path.read_text().splitlines()
    assert lines[0] == "<6>INFO gochat.test: plain line from alice"
    assert lines[1] == "<3>ERROR gochat.test: it failed"
    traceback = lines[2:-2]
    assert traceback and all(line.startswith("<3>") for line in traceback)
    assert lines[-2:] == ["<4>WARNING gochat.test: careful", "<7>DEBUG gochat.test: detail"]


def test_journal_stream_for_another_stream_is_ignored(tmp_path, root_logging, monkeypatch):
    """JOURNAL_STREAM inherited from a unit but naming a different file: plain text lines."""
    other = tmp_path / "other"
    other.write_text("")
    st = os.stat(other)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    stream = io.StringIO()
    setup_logging("INFO", "text", stream=stream)
    logging.getLogger("gochat.test").info("hello")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d INFO    gochat.test: hello\n", stream.getvalue()
    )


def test_daemon_logs_json_to_journald_and_serves_health(tmp_path):
    """`python -m gochat` with JSON logs under a fake journald stream, metrics on, SIGTERM."""
    log_path = tmp_path / "stderr"
    with open(log_path, "wb") as stderr:
        st = os.fstat(stderr.fileno())
        env = clean_env(
            GOCHAT_HOST="127.0.0.1",
            GOCHAT_PORT="0",
            GOCHAT_METRICS_ADDR="127.0.0.1:0",
            GOCHAT_LOG_FORMAT="json",
            JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "gochat", "--env-file", os.devnull],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        port = wait_for_log(log_path, r"metrics on http://127\.0\.0\.1:(\d+)/metrics", proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert json.loads(answer.read())["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = log_path.read_text().splitlines()
    assert lines
    for line in lines:
        match = re.fullmatch(r"<([2-7])>(\{.*\})", line)
        assert match, line
        entry = json.loads(match.group(2))
        assert {"ts", "level", "logger", "msg"} <= set(entry)
    assert any("shutdown complete" in line for line in lines)


def wait_for_log(path: Path, pattern: str, proc: subprocess.Popen[bytes]) -> int:
    """Wait (bounded) until the daemon's log shows `pattern`; return its first group."""
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=20)
    while datetime.datetime.now() < deadline:
        match = re.search(pattern, path.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        if proc.poll() is not None:
            raise AssertionError(f"gochat exited {proc.returncode}: {path.read_text()}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.05)  # a bounded wait that also notices an early exit
    raise AssertionError(f"no {pattern!r} in the log: {path.read_text()}")


# -- systemd unit, container, compose ------------------------------------------------

UNIT = Path(ROOT) / "contrib" / "gochat.service"


def unit_entries(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, val = line.partition("=")
        assert current is not None, line
        current.setdefault(key.strip(), []).append(val.strip())
    return sections


def test_systemd_unit_has_the_hardening():
    """The unit carries the state directory, limits and every hardening key asked for."""
    service = unit_entries(UNIT.read_text())["Service"]
    expected = {
        "EnvironmentFile": "-/etc/gochat/gochat.env",
        "StateDirectory": "gochat",
        "WorkingDirectory": "/var/lib/gochat",
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter": "@system-service",
        "CapabilityBoundingSet": "",
        "LimitNOFILE": "65536",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "TimeoutStopSec": "15",
        "ExecStart": "/opt/gochat/.venv/bin/gochat",
    }
    for key, want in expected.items():
        assert service.get(key) == [want], key
    assert int(service["LimitNOFILE"][0]) >= 10000 + 64


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verify(tmp_path):
    """`systemd-analyze verify` accepts the unit (ExecStart pointed at /bin/true)."""
    copy = tmp_path / "gochat.service"
    copy.write_text(re.sub(r"^ExecStart=.*$", "ExecStart=/bin/true", UNIT.read_text(), flags=re.M))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Unknown" not in output and "ignoring" not in output, output


DOCKERFILE = Path(ROOT) / "Dockerfile"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


def test_dockerfile_key_lines():
    """Slim base, non-root user, pip install ., volumes, container-only env, ports."""
    instructions = dockerfile_instructions()
    by_word: dict[str, list[str]] = {}
    for word, rest in instructions:
        by_word.setdefault(word, []).append(rest)
    assert by_word["FROM"] == ["python:3.11-slim"]
    assert any(
        re.search(r"pip install \"?\.(\[postgres\])?\"?( |$)", run) for run in by_word["RUN"]
    )
    users = by_word["USER"]
    assert users and users[-1] not in {"root", "0"}
    assert by_word["VOLUME"] == ['["/data", "/certs"]']
    env = " ".join(by_word["ENV"])
    for setting in ("GOCHAT_DB=/data/gochat.db", "GOCHAT_METRICS_ADDR=0.0.0.0:9100"):
        assert setting in env, setting
    # A named certificate must exist; the defaults, relative to /, are the /certs
    # volume and may be absent (compose.yaml: an empty ./certs runs without TLS).
    assert "GOCHAT_TLS_CERT" not in env and "GOCHAT_TLS_KEY" not in env
    assert by_word["WORKDIR"][-1] == "/"
    assert by_word["EXPOSE"] == ["8080 8081 8443 8444 9100"]
    assert "/healthz" in by_word["HEALTHCHECK"][0]
    ignored = [
        line.strip()
        for line in (Path(ROOT) / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for copy in by_word["COPY"]:
        for source in copy.split()[:-1]:
            assert (Path(ROOT) / source).exists(), source
            assert source.rstrip("/") not in ignored, source


def healthcheck_script() -> str:
    for word, rest in dockerfile_instructions():
        if word == "HEALTHCHECK":
            command = json.loads(rest[rest.index("CMD ") + 4 :])
            assert command[:2] == ["python", "-c"]
            return command[2]
    raise AssertionError("no HEALTHCHECK")


async def test_dockerfile_healthcheck_against_a_live_server(make_server):
    """The HEALTHCHECK's own python -c exits 0 against /healthz and 1+ when nothing answers."""
    server = await make_server(metrics_addr=METRICS)
    script = healthcheck_script()

    async def run(addr: str) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            env=clean_env(GOCHAT_METRICS_ADDR=addr),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return await asyncio.wait_for(proc.wait(), 30)

    assert await run(f"0.0.0.0:{server.ports['metrics']}") == 0
    assert await run(f"0.0.0.0:{free_port()}") != 0


def test_compose_file():
    """compose.yaml: gochat and postgres, GOCHAT_DB a postgresql:// URL to the postgres service."""
    text = (Path(ROOT) / "compose.yaml").read_text()
    assert "\t" not in text
    import yaml  # the test extra installs PyYAML

    compose = yaml.safe_load(text)
    services = compose["services"]
    assert set(services) == {"gochat", "postgres"}
    gochat = services["gochat"]
    assert gochat["environment"]["GOCHAT_DB"].startswith("postgresql://")
    assert "@postgres:5432/" in gochat["environment"]["GOCHAT_DB"]
    assert gochat["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "127.0.0.1:9100:9100" in gochat["ports"]
    assert "healthcheck" in services["postgres"]


# -- the addresses the startup log advertises ------------------------------------------


async def test_log_names_only_the_address_bound(make_server, caplog):
    """GOCHAT_HOST=127.0.0.1: the log shows that address and no "LAN address" line.

    The LAN line was printed for any machine with a route out, though nothing
    listened there: `nc` to it was refused.
    """
    caplog.set_level(logging.INFO, logger="gochat.server")
    server = await make_server()
    port = server.ports["plain"]
    text = caplog.text
    assert f"listening (plain) on 127.0.0.1:{port}" in text
    assert "LAN address" not in text
    for line in re.findall(r"\(nc (\S+) (\d+)\)", text):
        assert line == ("127.0.0.1", str(port))


def test_a_wildcard_listener_advertises_only_local_addresses(monkeypatch):
    """For 0.0.0.0 the machine's address is listed only when it is really assigned here."""
    from gochat import listeners

    monkeypatch.setattr(listeners, "lan_address", lambda family: "203.0.113.9")
    assert listeners.advertised(("0.0.0.0", 8080)) == []  # not ours: bind fails
    monkeypatch.setattr(listeners, "lan_address", lambda family: None)
    assert listeners.advertised(("0.0.0.0", 8080)) == []
    assert listeners.advertised(("127.0.0.1", 8080)) == ["127.0.0.1"]
    assert listeners.advertised(("::1", 8080, 0, 0)) == ["::1"]


# -- --check-config and start-up run the same steps ------------------------------------


def same_verdict(tmp_path: Path, *args: str, **env: str) -> str:
    """Run --check-config and the daemon with the same settings: both must refuse, the
    daemon with exit 2 and one ERROR line, the check with that line as its only error."""
    code, stderr = run_gochat(tmp_path, *args, **env)
    assert code == 2, stderr
    message = one_error_line(stderr).split(" gochat: ", 1)[1]
    code, report = run_gochat(tmp_path, "--check-config", *args, **env)
    assert code == 2, report
    assert [line for line in report.splitlines() if line.startswith("error: ")] == [
        f"error: {message}"
    ], report
    return message


def make_immutable(path: Path) -> contextlib.AbstractContextManager[None]:
    """chattr +i (even root cannot write then); without it, read-only bits for a non-root
    user; skip where neither stops a write."""

    @contextlib.contextmanager
    def immutable():
        if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)]).returncode == 0:
            try:
                yield
            finally:
                subprocess.run(["chattr", "-i", str(path)], check=True)
            return
        if os.geteuid() == 0:
            pytest.skip("chattr +i does not work here and root ignores permission bits")
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)

    return immutable()


def test_a_database_that_takes_no_writes_stops_startup(tmp_path):
    """An immutable SQLite file opens read-only: the daemon used to start and lose every
    write. Start-up probes a write now, and the check runs that same open."""
    db = tmp_path / "chat.db"
    code, stderr = run_gochat(tmp_path, GOCHAT_DB=str(db))  # creates and migrates it
    assert code is None, stderr
    with make_immutable(db):
        message = same_verdict(tmp_path, GOCHAT_DB=str(db))
    assert f"cannot write to SQLite database {db}" in message
    assert "readonly" in message


def test_a_database_path_that_cannot_be_created(tmp_path):
    """GOCHAT_DB=/sys/x.db: the check said OK (root may write the directory, it thought)."""
    message = same_verdict(tmp_path, GOCHAT_DB="/sys/gochat-test.db")
    assert "/sys/gochat-test.db" in message
    assert not os.path.exists("/sys/gochat-test.db")


def test_check_config_leaves_the_database_as_it_found_it(tmp_path):
    """The check opens the store as start-up does but rolls back: a new file is removed,
    an existing one is not migrated."""
    code, report = run_gochat(tmp_path, "--check-config")
    assert code == 0, report
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("listener", ["plain", "tls", "json", "metrics"])
def test_a_port_in_use(tmp_path, listener, cert):
    """A port another process holds: the check binds it as start-up does and fails alike."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {"GOCHAT_TLS_CERT": str(cert[0]), "GOCHAT_TLS_KEY": str(cert[1])}
        if listener == "plain":
            env["GOCHAT_PORT"] = str(port)
        elif listener == "tls":
            env["GOCHAT_TLS_PORT"] = str(port)
        elif listener == "json":
            env["GOCHAT_JSON_PORT"] = str(port)
        else:
            env["GOCHAT_METRICS_ADDR"] = f"127.0.0.1:{port}"
        message = same_verdict(tmp_path, **env)
    assert f"127.0.0.1:{port}" in message and "address already in use" in message


def test_colliding_ports(tmp_path, cert):
    """GOCHAT_PORT == GOCHAT_TLS_PORT, or the metrics port a chat port: the same line."""
    port = str(free_port())
    tls = {"GOCHAT_TLS_CERT": str(cert[0]), "GOCHAT_TLS_KEY": str(cert[1])}
    message = same_verdict(tmp_path, GOCHAT_PORT=port, GOCHAT_TLS_PORT=port, **tls)
    assert message == f"GOCHAT_PORT and GOCHAT_TLS_PORT are both {port}"
    message = same_verdict(tmp_path, GOCHAT_PORT=port, GOCHAT_METRICS_ADDR=f"127.0.0.1:{port}")
    assert message == f"GOCHAT_METRICS_ADDR port {port} is also a chat port"


async def test_log_names_each_listener_by_what_it_serves(make_server, caplog):
    """With TLS off and a JSON port, the JSON listener is logged as json, not as tls."""
    caplog.set_level(logging.INFO, logger="gochat.server")
    server = await make_server(json_port=free_port())
    text = caplog.text
    assert f"listening (json) on 127.0.0.1:{server.ports['json']}" in text
    assert "listening (tls)" not in text
