"""The TLS port's own behaviour, with a TLS client driven byte by byte.

The client here is `ssl.SSLObject` over a plain socket, so a test decides
what goes into each TCP segment: a real client library or a scripted
`openssl s_client` may put its first line in the same segment as the end of
the handshake, and the server must treat that line like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gochat.server import ChatServer

from .conftest import (
    ChatClient,
    ServerFactory,
    daemon_env,
    self_signed,
    test_config,
    tls_client_context,
    wait_until,
)
from .test_persistence_e2e import Daemon, daemons  # noqa: F401 - fixture

TIMEOUT = 5.0


@pytest.fixture
async def tls_server(make_server: ServerFactory, cert: tuple[Path, Path]) -> ChatServer:
    return await make_server(
        tls_cert=str(cert[0]), tls_key=str(cert[1]), tls_port=0, max_conn_per_ip=0
    )


class RawTlsClient:
    """TLS over a non-blocking socket; `handshake(first=...)` sends the last flight and
    `first` (application data) in one send(), as an eager client does."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = tls_client_context().wrap_bio(self.incoming, self.outgoing)
        self.text = ""

    @classmethod
    async def connect(cls, port: int) -> RawTlsClient:
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(sock)

    async def _send_pending(self) -> None:
        data = self.outgoing.read()
        if data:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def _receive(self) -> bool:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 65536), 5)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    async def handshake(self, first: bytes = b"") -> None:
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._send_pending()
                await self._receive()
        if first:
            self.tls.write(first)  # queued behind the client's Finished: one segment
        await self._send_pending()

    async def send(self, line: bytes) -> None:
        self.tls.write(line)
        await self._send_pending()

    async def expect(self, needle: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                while chunk := self.tls.read(65536):
                    self.text += chunk.decode("utf-8", "replace")
            if needle in self.text:
                return
            try:
                more = loop.time() < deadline and await self._receive()
            except TimeoutError:
                more = False
            if not more:
                raise AssertionError(f"no {needle!r}; got {self.text[-600:]!r}")

    def close(self) -> None:
        self.sock.close()


async def test_a_line_sent_with_the_handshakes_last_flight_is_answered(tls_server):
    """The name arrives in the same segment as the client's Finished: it gets the welcome.

    asyncio hands such data to the protocol before `start_tls` returns the TLS
    transport; the session once handled it with nowhere to write, so the user
    was logged in but never saw the welcome, and the connection was never released.
    """
    client = await RawTlsClient.connect(tls_server.ports["tls"])
    try:
        await client.handshake(first=b"eager\r\n")
        await client.expect("Enter your username: ")
        await client.expect("Welcome, eager!")
        await client.send(b"hello over tls\r\n")
        await client.expect("hello over tls")
    finally:
        client.close()
    await wait_until(lambda: tls_server.stats()["connections"] == 0, what="the release")


async def test_a_whole_session_sent_with_the_handshake(tls_server):
    """Name, a message and /quit in the first segment: all answered in order, then closed."""
    client = await RawTlsClient.connect(tls_server.ports["tls"])
    try:
        await client.handshake(first=b"burst\r\nfirst words\r\n/quit\r\n")
        await client.expect("Goodbye! Thanks for chatting.")
        welcome = client.text.index("Welcome, burst!")
        assert client.text.index("Enter your username: ") < welcome
        assert welcome < client.text.index("first words") < client.text.index("Goodbye!")
    finally:
        client.close()
    await wait_until(lambda: tls_server.stats()["connections"] == 0, what="the release")
    assert tls_server.stats()["clients"] == 0


async def _eager_clients(server: ChatServer, count: int) -> None:
    """`count` TLS clients at once, each sending its ClientHello the moment it connects."""
    clients = await asyncio.gather(
        *(RawTlsClient.connect(server.ports["tls"]) for _ in range(count))
    )
    try:
        names = [b"eager%d\r\n" % i for i in range(count)]
        await asyncio.gather(*(c.handshake(first=n) for c, n in zip(clients, names, strict=True)))
        for i, client in enumerate(clients):
            await client.expect(f"Welcome, eager{i}!")
    finally:
        for client in clients:
            client.close()
    await wait_until(lambda: server.stats()["connections"] == 0, what="the release")


async def test_many_eager_tls_clients(tls_server):
    await _eager_clients(tls_server, 40)


def test_many_eager_tls_clients_under_uvloop(cert):
    """uvloop starts reading as soon as connection_made returns, pause or not.

    With the TLS layer installed by loop.start_tls (a loop turn later), a
    ClientHello that was already waiting was read as chat text: about one
    handshake in ten failed under load.
    """
    uvloop = pytest.importorskip("uvloop")  # in the test extra; missing only on Windows

    async def scenario() -> None:
        config = test_config(
            tls_cert=str(cert[0]), tls_key=str(cert[1]), tls_port=0, max_conn_per_ip=0
        )
        server = ChatServer(config)
        await server.start()
        try:
            for _ in range(3):
                await _eager_clients(server, 40)
        finally:
            await server.shutdown()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(scenario(), 60))


# -- TLS files the operator named ----------------------------------------------------


def run_gochat(cwd: Path, *args: str, **env: str) -> tuple[int | None, str]:
    """`python -m gochat ARGS` in `cwd`: (exit status, stderr), or (None, stderr) when
    it got as far as listening (it is then stopped with SIGTERM)."""
    settings = daemon_env(**env)
    for name in ("GOCHAT_TLS_CERT", "GOCHAT_TLS_KEY"):
        if name not in env:
            settings.pop(name, None)  # the default, certs/server.*, absent in `cwd`
    proc = subprocess.Popen(
        [sys.executable, "-m", "gochat", "--env-file", os.devnull, *args],
        cwd=cwd,
        env=settings,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if "--check-config" in args else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        if "--check-config" in args:
            out, err = proc.communicate(timeout=60)
            return proc.returncode, out + err
        lines = []
        deadline = time.monotonic() + 30
        for line in proc.stderr:  # ends when gochat exits
            lines.append(line)
            if "listening (plain)" in line:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
                return None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
        return proc.wait(timeout=30), "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def one_error_line(stderr: str) -> str:
    """The daemon's single ERROR line (it must be the only one)."""
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


def tls_cases(tmp_path: Path, cert: tuple[Path, Path], other: tuple[Path, Path]):
    missing = str(tmp_path / "missing.crt"), str(tmp_path / "missing.key")
    crt, key = map(str, cert)
    return {
        "both missing": (
            {"GOCHAT_TLS_CERT": missing[0], "GOCHAT_TLS_KEY": missing[1]},
            f"GOCHAT_TLS_CERT={missing[0]}: no such file",
        ),
        "key missing": (
            {"GOCHAT_TLS_CERT": crt, "GOCHAT_TLS_KEY": missing[1]},
            f"GOCHAT_TLS_KEY={missing[1]}: no such file",
        ),
        "only the cert set, default key absent": (
            {"GOCHAT_TLS_CERT": crt},
            "GOCHAT_TLS_KEY=certs/server.key: no such file",
        ),
        "key of another certificate": (
            {"GOCHAT_TLS_CERT": crt, "GOCHAT_TLS_KEY": str(other[1])},
            f"GOCHAT_TLS_KEY={other[1]} does not match the certificate GOCHAT_TLS_CERT={crt}",
        ),
        "certificate where the key should be": (
            {"GOCHAT_TLS_CERT": crt, "GOCHAT_TLS_KEY": crt},
            f"GOCHAT_TLS_KEY={crt}: not a PEM private key",
        ),
        "key where the certificate should be": (
            {"GOCHAT_TLS_CERT": key, "GOCHAT_TLS_KEY": key},
            f"GOCHAT_TLS_CERT={key}: not a PEM certificate",
        ),
    }


CASES = [
    "both missing",
    "key missing",
    "only the cert set, default key absent",
    "key of another certificate",
    "certificate where the key should be",
    "key where the certificate should be",
]


@pytest.mark.parametrize("case", CASES)
def test_tls_files_the_operator_named_must_work(tmp_path, cert, other_cert, case):
    """Set explicitly, a missing or wrong file stops the daemon (exit 2, one line naming
    it) and fails --check-config with the same line. It used to turn TLS off silently
    (missing) or say `[SSL] PEM lib` (wrong file)."""
    env, message = tls_cases(tmp_path, cert, other_cert)[case]
    code, stderr = run_gochat(tmp_path, **env)
    assert code == 2, stderr
    assert one_error_line(stderr).endswith(f"ERROR   gochat: {message}"), stderr
    code, report = run_gochat(tmp_path, "--check-config", **env)
    assert code == 2, report
    assert f"error: {message}\n" in report


def test_tls_files_named_by_flag_or_env_file(tmp_path):
    """A flag or a line in .env is as explicit as the environment."""
    missing = str(tmp_path / "missing.crt")
    code, stderr = run_gochat(tmp_path, "--tls-cert", missing)
    assert code == 2 and f"GOCHAT_TLS_CERT={missing}: no such file" in stderr, stderr
    env_file = tmp_path / "gochat.env"
    env_file.write_text(f"GOCHAT_TLS_CERT={missing}\n")
    code, stderr = run_gochat(tmp_path, "--env-file", str(env_file))
    assert code == 2 and f"GOCHAT_TLS_CERT={missing}: no such file" in stderr, stderr


def test_default_tls_files_may_be_absent(tmp_path):
    """Nothing set and no certs/ here: TLS is simply off, and the check agrees."""
    code, stderr = run_gochat(tmp_path)
    assert code is None, stderr
    assert "TLS disabled" in stderr and " ERROR " not in stderr
    code, report = run_gochat(tmp_path, "--check-config")
    assert code == 0, report
    assert "tls       off" in report


def test_tls_cert_none_turns_tls_off(tmp_path):
    """GOCHAT_TLS_CERT=none: TLS off on purpose, even with certs/server.* present."""
    certs = tmp_path / "certs"
    certs.mkdir()
    self_signed(certs)
    code, stderr = run_gochat(tmp_path, GOCHAT_TLS_CERT="none")
    assert code is None, stderr
    assert "listening (tls)" not in stderr and "TLS disabled" in stderr


# -- SIGHUP: a renewed certificate without a restart -----------------------------------


async def peer_certificate(port: int) -> bytes:
    """The certificate a new TLS connection to `port` is shown (DER)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=tls_client_context()), TIMEOUT
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        await asyncio.wait_for(reader.readuntil(b"Enter your username: "), TIMEOUT)
    finally:
        writer.close()
    assert der
    return bytes(der)


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def install(pair: tuple[Path, Path], cert: Path, key: Path) -> None:
    """What certbot's deploy hook does: new files at the configured paths."""
    cert.write_bytes(pair[0].read_bytes())
    key.write_bytes(pair[1].read_bytes())


async def test_sighup_reloads_the_certificate_and_loses_nothing(
    tmp_path,
    cert,
    other_cert,
    daemons,  # noqa: F811
):
    """SIGHUP: still running, a log line, new handshakes get the renewed pair; a bad pair
    is refused with a log line and the last good one stays; chat from before the
    signal is in the store after SIGTERM. SIGHUP used to kill the daemon (exit 129)."""
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    install(cert, live_cert, live_key)
    db = tmp_path / "chat.db"
    daemon = await Daemon.start(
        str(tmp_path),
        str(db),
        GOCHAT_TLS_CERT=str(live_cert),
        GOCHAT_TLS_KEY=str(live_key),
        GOCHAT_FLUSH_MS="600000",  # nothing reaches the store before shutdown
    )
    daemons.append(daemon)
    tls_port = int((await daemon.wait_for(r"listening \(tls\) on 127\.0\.0\.1:(\d+)"))[1])
    assert await peer_certificate(tls_port) == der(cert[0])
    alice = await ChatClient.connect(daemon.port)
    try:
        await alice.login("alice")
        await alice.send("said before the reload")
        await alice.expect("said before the reload")

        install(other_cert, live_cert, live_key)
        seen = len(daemon.lines)
        daemon.proc.send_signal(signal.SIGHUP)
        line = (await daemon.wait_for(r".*SIGHUP: .*", after=seen))[0]
        assert "reloaded TLS certificate" in line and str(live_cert) in line, line
        assert daemon.proc.returncode is None
        assert await peer_certificate(tls_port) == der(other_cert[0])

        live_key.write_bytes(cert[1].read_bytes())  # half a renewal: the key does not match
        seen = len(daemon.lines)
        daemon.proc.send_signal(signal.SIGHUP)
        line = (await daemon.wait_for(r".*SIGHUP: .*", after=seen))[0]
        assert " ERROR " in line and "does not match the certificate" in line, line
        assert "keep" in line
        assert await peer_certificate(tls_port) == der(other_cert[0])

        await alice.send("said after the reloads")  # the old connection never noticed
        await alice.expect("said after the reloads")
    finally:
        await alice.close()
    assert await daemon.stop(signal.SIGTERM) == 0, daemon.stderr
    with contextlib.closing(sqlite3.connect(db)) as conn:
        bodies = [row[0] for row in conn.execute("SELECT body FROM messages ORDER BY id")]
    assert bodies == ["said before the reload", "said after the reloads"]


async def test_sighup_with_tls_off_says_a_restart_is_needed(tmp_path, daemons):  # noqa: F811
    """TLS off at start (no certs/), files appear, SIGHUP: the daemon keeps running and
    says that turning TLS on takes a restart (the TLS port was never bound)."""
    daemon = await Daemon.start(str(tmp_path), "none", GOCHAT_TLS_CERT="")
    daemons.append(daemon)
    (tmp_path / "certs").mkdir()
    self_signed(tmp_path / "certs")
    seen = len(daemon.lines)
    daemon.proc.send_signal(signal.SIGHUP)
    line = (await daemon.wait_for(r".*SIGHUP: .*", after=seen))[0]
    assert "needs a restart" in line, line
    client = await ChatClient.connect(daemon.port)
    try:
        await client.login("still")
    finally:
        await client.close()
    assert await daemon.stop(signal.SIGTERM) == 0
