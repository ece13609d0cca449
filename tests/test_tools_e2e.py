"""End to end with the tools users really type: nc, telnet, socat, openssl s_client.

The daemon runs as a subprocess (`python -m gochat`) on port 0 with a throwaway
self-signed certificate; the chosen ports are read from its log. Each client
tool runs as a real process driven through pipes, and every wait is a wait for
output with a timeout. A missing tool is a failure, not a skip: `.ci/run`
installs them (netcat-openbsd, telnet, socat, openssl).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gochat.config import settings

from .conftest import daemon_env

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 5.0
SHUTDOWN_NOTICE = "Server is shutting down. Goodbye!"
QUIT_NOTICE = "Goodbye! Thanks for chatting."
PROMPT = "Enter your username: "
PACKAGES = "netcat-openbsd telnet socat openssl"


def require(tool: str) -> str:
    """The tool's path, or a test failure saying how to get it."""
    path = shutil.which(tool)
    if path is None:
        pytest.fail(
            f"{tool!r} is not installed; these end-to-end tests need real client tools "
            f"(apt-get install {PACKAGES}, which .ci/run does)",
            pytrace=False,
        )
    return path


# -- output collection ----------------------------------------------------------


class Stream:
    """Bytes arriving on a background thread; `expect` waits for text with a timeout."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.data = bytearray()
        self.pos = 0
        self.eof = False
        self.cond = threading.Condition()

    def _pump(self, read: Callable[[], bytes]) -> None:
        try:
            while True:
                try:
                    chunk = read()
                except OSError:
                    chunk = b""
                with self.cond:
                    if not chunk:
                        self.eof = True
                        self.cond.notify_all()
                        return
                    self.data += chunk
                    self.cond.notify_all()
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def start(self, read: Callable[[], bytes]) -> None:
        threading.Thread(target=self._pump, args=(read,), daemon=True).start()

    @property
    def text(self) -> str:
        with self.cond:
            return self.data.decode("utf-8", "replace")

    def _fail(self, what: str) -> None:
        tail = self.data[-1200:].decode("utf-8", "replace")
        raise AssertionError(f"{self.label}: {what}; output so far ends with:\n{tail!r}")

    def expect(self, needle: str, timeout: float = TIMEOUT) -> str:
        """Wait until `needle` arrives after what was already consumed; consume through it."""
        raw = needle.encode()
        with self.cond:
            found = self.cond.wait_for(
                lambda: self.data.find(raw, self.pos) >= 0 or self.eof, timeout
            )
            index = self.data.find(raw, self.pos)
            if index < 0:
                self._fail(f"{'closed' if found else 'timed out'} before {needle!r} arrived")
            end = index + len(raw)
            head = self.data[self.pos : end].decode("utf-8", "replace")
            self.pos = end
            return head

    def expect_re(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """Wait until `pattern` matches the unconsumed text; consume through the match."""
        regex = re.compile(pattern.encode())
        with self.cond:
            self.cond.wait_for(lambda: regex.search(self.data, self.pos) or self.eof, timeout)
            match = regex.search(self.data, self.pos)
            if match is None:
                self._fail(f"no match for {pattern!r}")
            self.pos = match.end()
            return re.match(pattern, match.group(0).decode())  # type: ignore[return-value]

    def drain(self, timeout: float = TIMEOUT) -> None:
        """Wait (without consuming) until the reader thread has seen the end of the pipe."""
        with self.cond:
            self.cond.wait_for(lambda: self.eof, timeout)

    def wait_eof(self, timeout: float = TIMEOUT) -> str:
        """Wait for the end of the stream; return what was not consumed yet."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.eof, timeout):
                self._fail("still open")
            rest = self.data[self.pos :].decode("utf-8", "replace")
            self.pos = len(self.data)
            return rest


class Tool:
    """A client tool run as a real process: we type into stdin and read its stdout."""

    def __init__(self, *args: str) -> None:
        require(args[0])
        self.args = args
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.out = Stream(args[0])
        self.err = Stream(args[0] + " stderr")
        out_fd, err_fd = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        self.out.start(lambda: os.read(out_fd, 65536))
        self.err.start(lambda: os.read(err_fd, 65536))

    def expect(self, needle: str, timeout: float = TIMEOUT) -> str:
        return self.out.expect(needle, timeout)

    def expect_re(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        return self.out.expect_re(pattern, timeout)

    def type(self, text: str) -> None:
        """What a user types at the keyboard; a newline is Enter."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def end_input(self) -> None:
        """Ctrl-D: end of input on stdin."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # the tool may have gone already
            self.proc.stdin.close()

    def wait_exit(self, timeout: float = TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{' '.join(self.args)} still running after {timeout:g} s; "
                f"stdout ends with {self.out.text[-600:]!r}; stderr: {self.err.text[-600:]!r}"
            ) from None
        # The process is gone, but the reader threads may not have read its last
        # bytes yet (telnet's "Connection closed" on stderr, under load): wait for EOF.
        self.out.drain()
        self.err.drain()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class SocketClient:
    """A plain Python socket client: sends CR LF lines, keeps every byte it receives."""

    def __init__(self, port: int, label: str = "socket client") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.settimeout(None)
        self.out = Stream(label)
        self.out.start(lambda: self.sock.recv(65536))

    def expect(self, needle: str, timeout: float = TIMEOUT) -> str:
        return self.out.expect(needle, timeout)

    def expect_re(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        return self.out.expect_re(pattern, timeout)

    def send(self, line: str | bytes, end: bytes = b"\r\n") -> None:
        data = line.encode() if isinstance(line, str) else line
        self.sock.sendall(data + end)

    def login(self, name: str) -> SocketClient:
        self.expect(PROMPT)
        self.send(name)
        self.expect(f"Welcome, {name}!")
        return self

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


# -- the daemon as a subprocess -----------------------------------------------------


def server_env(**settings_: str) -> dict[str, str]:
    """The shared subprocess environment, with the log level these tests read."""
    return daemon_env(**settings_)


def gochat(*args: str) -> list[str]:
    return [sys.executable, "-m", "gochat", *args]


class Daemon:
    """`python -m gochat` running in a scratch directory, its stderr collected."""

    def __init__(self, workdir: Path, cert: tuple[Path, Path], event_loop: str = "asyncio") -> None:
        env = server_env(
            GOCHAT_TLS_CERT=str(cert[0]), GOCHAT_TLS_KEY=str(cert[1]), GOCHAT_EVENT_LOOP=event_loop
        )
        self.proc = subprocess.Popen(
            gochat(),
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        self.log = Stream("gochat stderr")
        self.log.start(lambda: os.read(fd, 65536))
        ports = {}
        for kind in ("plain", "tls"):
            match = self.log.expect_re(rf"listening \({kind}\) on 127\.0\.0\.1:(\d+)", 10)
            ports[kind] = int(match.group(1))
        self.plain, self.tls = ports["plain"], ports["tls"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        self.log.wait_eof(TIMEOUT)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def _start(
    tmp_path_factory: pytest.TempPathFactory, cert: tuple[Path, Path], event_loop: str = "asyncio"
) -> Daemon:
    return Daemon(tmp_path_factory.mktemp("run"), cert, event_loop)


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def daemon(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    cert: tuple[Path, Path],
) -> Iterator[Daemon]:
    """One daemon per event loop (plain asyncio, and uvloop as gochat[fast] runs it),
    shared by the chat tests of this module; it must log no traceback."""
    server = _start(tmp_path_factory, cert, request.param)
    uses_uvloop = "using uvloop" in server.log.text
    try:
        assert uses_uvloop == (request.param == "uvloop"), server.log.text[-2000:]
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.log.text, server.log.text[-3000:]


@pytest.fixture
def cleanup() -> Iterator[list[Tool | SocketClient]]:
    """Everything a test opens is killed or closed at the end, pass or fail."""
    opened: list[Tool | SocketClient] = []
    yield opened
    for thing in reversed(opened):
        if isinstance(thing, Tool):
            thing.kill()
        else:
            thing.close()


def tool(cleanup: list[Tool | SocketClient], *args: str) -> Tool:
    process = Tool(*args)
    cleanup.append(process)
    return process


def client(cleanup: list[Tool | SocketClient], port: int, name: str) -> SocketClient:
    peer = SocketClient(port, name)
    cleanup.append(peer)
    return peer.login(name)


def chat_line(name: str, text: str) -> str:
    """A pattern for a fresh message from `name` as a plain-mode CR LF reader sees it."""
    return rf"{re.escape(name)} \[\d\d:\d\d\]\r\n  ╰─> {re.escape(text)}\r\n"


# -- the tools ----------------------------------------------------------------------


def test_nc_user_chats_and_quits(daemon: Daemon, cleanup: list) -> None:
    """A user on a real `nc` logs in, chats both ways with a socket client, and /quit ends nc."""
    peer = client(cleanup, daemon.plain, "ncpeer")
    nc = tool(cleanup, "nc", "127.0.0.1", str(daemon.plain))
    nc.expect(PROMPT)
    nc.type("ncuser\n")
    nc.expect("Welcome, ncuser!")
    peer.expect("ncuser joined the chat")

    nc.type("hello from nc\n")
    peer.expect_re(chat_line("ncuser", "hello from nc"))
    nc.expect_re(chat_line("ncuser", "hello from nc"))  # nc passes CR LF through untouched
    peer.send("hello nc user")
    nc.expect_re(chat_line("ncpeer", "hello nc user"))

    nc.type("/quit\n")
    nc.expect(QUIT_NOTICE)
    peer.expect("ncuser left the chat")
    # Its stdin stays open, as a terminal's would: netcat-openbsd ignores a FIN
    # then, so the server resets the connection once nc has every byte, and nc exits.
    assert nc.wait_exit() == 0
    assert nc.out.text.endswith(QUIT_NOTICE + "\r\n"), nc.out.text[-300:]


def test_telnet_user_chats_without_negotiation(daemon: Daemon, cleanup: list) -> None:
    """A real `telnet` logs in and chats; the server never negotiates; CR LF and CR NUL work."""
    peer = client(cleanup, daemon.plain, "telpeer")
    telnet = tool(cleanup, "telnet", "127.0.0.1", str(daemon.plain))
    telnet.expect(PROMPT)
    telnet.type("teluser\n")  # telnet sends the name with CR LF
    telnet.expect("Welcome, teluser!")
    peer.expect("teluser joined the chat")

    telnet.type("hello from telnet\n")
    peer.expect_re(chat_line("teluser", "hello from telnet"))
    telnet.type("left of cr\rright of cr\n")  # a lone CR goes out as CR NUL
    peer.expect_re(chat_line("teluser", "left of cr"))
    peer.expect_re(chat_line("teluser", "right of cr"))
    peer.send("hello telnet user")
    telnet.expect_re(r"telpeer \[\d\d:\d\d\]")  # telnet prints CR LF as LF
    telnet.expect("╰─> hello telnet user")

    telnet.type("/quit\n")
    telnet.expect(QUIT_NOTICE)
    assert telnet.wait_exit() == 0  # telnet exits by itself when the server closes
    assert "Connection closed by foreign host" in telnet.err.text
    peer.expect("teluser left the chat")
    received = bytes(peer.out.data)
    assert b"\xff" not in received, "the server sent a telnet IAC byte"
    assert b"\x00" not in received, "a NUL from telnet's CR NUL was relayed"


def test_socat_user_chats_and_quits(daemon: Daemon, cleanup: list) -> None:
    """A user on `socat - TCP:host:port` logs in, chats both ways, and /quit ends socat."""
    peer = client(cleanup, daemon.plain, "socatpeer")
    socat = tool(cleanup, "socat", "-", f"TCP:127.0.0.1:{daemon.plain}")
    socat.expect(PROMPT)
    socat.type("socatuser\n")
    socat.expect("Welcome, socatuser!")
    peer.expect("socatuser joined the chat")

    socat.type("hello from socat\n")
    peer.expect_re(chat_line("socatuser", "hello from socat"))
    peer.send("hello socat user")
    socat.expect_re(chat_line("socatpeer", "hello socat user"))

    socat.type("/quit\n")
    socat.expect(QUIT_NOTICE)
    assert socat.wait_exit() == 0
    peer.expect("socatuser left the chat")


def test_openssl_s_client_chats_over_tls(daemon: Daemon, cleanup: list) -> None:
    """`openssl s_client -quiet` logs in over TLS and chats both ways with a plain-port user."""
    peer = client(cleanup, daemon.plain, "tlspeer")
    s_client = tool(cleanup, "openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{daemon.tls}")
    s_client.expect(PROMPT)
    s_client.type("tlsuser\n")
    s_client.expect("Welcome, tlsuser!")
    peer.expect("tlsuser joined the chat")

    # Without -quiet, s_client would eat a line starting with Q or R as a command.
    s_client.type("Quick question over TLS\n")
    peer.expect_re(chat_line("tlsuser", "Quick question over TLS"))
    peer.send("Reply in plain text")
    s_client.expect_re(chat_line("tlspeer", "Reply in plain text"))

    s_client.type("/quit\n")
    s_client.expect(QUIT_NOTICE)
    assert s_client.wait_exit() == 0
    peer.expect("tlsuser left the chat")


@pytest.mark.parametrize(
    ("version", "accepted"),
    [("TLSv1_1", False), ("TLSv1_2", True), ("TLSv1_3", True)],
)
def test_tls_port_requires_tls_1_2(daemon: Daemon, version: str, accepted: bool) -> None:
    """The TLS port completes TLS 1.2 and 1.3 handshakes and refuses TLS 1.1."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        tls_version = getattr(ssl.TLSVersion, version)
        context.minimum_version = context.maximum_version = tls_version
    with socket.create_connection(("127.0.0.1", daemon.tls), timeout=TIMEOUT) as raw:
        if not accepted:
            # The server hangs up on the TLS 1.1 ClientHello (today without the
            # protocol_version alert, which would be the other acceptable answer). Not
            # any SSLError: a client that cannot offer TLS 1.1 (NO_PROTOCOLS_AVAILABLE)
            # or a certificate problem would prove nothing about the server.
            with pytest.raises(ssl.SSLError) as refused:
                context.wrap_socket(raw)
            # OpenSSL 3.0 (Debian's own Python) names no reason for the hang-up.
            error = refused.value
            hung_up = isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError)
            assert hung_up or error.reason in {
                "UNEXPECTED_EOF_WHILE_READING",
                "TLSV1_ALERT_PROTOCOL_VERSION",
            }, repr(error)
            return
        with context.wrap_socket(raw) as conn:
            assert conn.version() == version.replace("_", ".")
            received = b""
            while PROMPT.encode() not in received:
                chunk = conn.recv(4096)
                assert chunk, f"closed before the prompt: {received!r}"
                received += chunk


def client_hello() -> bytes:
    """The bytes a real TLS client (Python's OpenSSL) sends first."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        conn.do_handshake()
    hello = outgoing.read()
    assert hello.startswith(b"\x16\x03")
    return hello


def after_greeting(reply: str) -> str:
    """What follows the banner and name prompt (the server greets before the client speaks)."""
    return reply.rpartition(PROMPT)[2]


def test_tls_client_hello_on_plain_port(daemon: Daemon, cleanup: list) -> None:
    """A ClientHello on the plain port gets one line pointing at the TLS port, then a close."""
    raw = SocketClient(daemon.plain, "tls on plain port")
    cleanup.append(raw)
    raw.send(client_hello(), end=b"")
    answer = after_greeting(raw.out.wait_eof())
    assert answer.endswith("\r\n") and answer.count("\n") == 1, answer
    assert "TLS" in answer and str(daemon.tls) in answer, answer

    # The real tool gives up at once instead of waiting at a name prompt.
    s_client = tool(cleanup, "openssl", "s_client", "-connect", f"127.0.0.1:{daemon.plain}")
    assert s_client.wait_exit() != 0
    daemon.log.expect("refused tls from 127.0.0.1 on the plain port")


def test_http_request_on_plain_port(daemon: Daemon, cleanup: list) -> None:
    """`GET / HTTP/1.1` on the plain port gets HTTP 400 with one explanatory line, then a close."""
    raw = SocketClient(daemon.plain, "http on plain port")
    cleanup.append(raw)
    raw.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n", end=b"")
    answer = after_greeting(raw.out.wait_eof())
    head, _, body = answer.partition("\r\n\r\n")
    assert head.startswith("HTTP/1.0 400 "), answer
    assert body.endswith("\r\n") and body.count("\n") == 1 and "chat" in body, answer
    daemon.log.expect("refused http from 127.0.0.1 on the plain port")


# -- process life -------------------------------------------------------------------


def test_sigterm_says_goodbye_to_everyone_and_exits_0(
    tmp_path_factory: pytest.TempPathFactory, cert: tuple[Path, Path], cleanup: list
) -> None:
    """SIGTERM with nc, s_client and a socket client connected: all get the goodbye; exit 0."""
    server = _start(tmp_path_factory, cert)
    try:
        peer = client(cleanup, server.plain, "sockuser")
        nc = tool(cleanup, "nc", "127.0.0.1", str(server.plain))
        nc.expect(PROMPT)
        nc.type("ncuser\n")
        nc.expect("Welcome, ncuser!")
        s_client = tool(
            cleanup, "openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{server.tls}"
        )
        s_client.expect(PROMPT)
        s_client.type("tlsuser\n")
        s_client.expect("Welcome, tlsuser!")
        peer.expect("tlsuser joined the chat")

        server.proc.send_signal(signal.SIGTERM)
        for user in (peer, nc, s_client):
            user.expect(SHUTDOWN_NOTICE)
        try:
            code = server.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running: {server.log.text[-2000:]}") from None
        assert code == 0, server.log.text[-2000:]
        peer.out.wait_eof()
        assert s_client.wait_exit() == 0
        assert nc.wait_exit() == 0  # with its stdin still open (see the /quit test)
        log = server.log.text
        assert "Traceback" not in log, log
        assert "shutdown complete" in log, log
    finally:
        server.stop()


def run_gochat(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            gochat(*args),
            cwd=cwd,
            env=server_env(**env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"gochat {' '.join(args)} did not exit: {exc.stderr!r}") from None


def test_help_lists_every_setting(tmp_path: Path) -> None:
    """`python -m gochat --help` names every environment setting and exits 0."""
    result = run_gochat("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = [f.metadata["env"] for f, _ in settings()]
    assert sum(name.startswith("GOCHAT_") for name in names) >= 20
    missing = [name for name in names if name not in result.stdout]
    assert not missing, f"--help does not mention {missing}"


def test_invalid_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    """GOCHAT_PORT=abc exits with status 2 and a single line naming GOCHAT_PORT."""
    result = run_gochat(cwd=tmp_path, GOCHAT_PORT="abc")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GOCHAT_PORT" in lines[0]


def test_uvloop_asked_for_but_missing_exits_2(tmp_path: Path) -> None:
    """GOCHAT_EVENT_LOOP=uvloop without uvloop: one line, status 2, nothing served."""
    hidden = tmp_path / "no-uvloop"
    (hidden / "uvloop").mkdir(parents=True)
    (hidden / "uvloop" / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    path = os.pathsep.join((str(hidden), str(ROOT)))
    result = run_gochat(cwd=tmp_path, GOCHAT_EVENT_LOOP="uvloop", PYTHONPATH=path)
    assert result.returncode == 2, result.stderr
    assert "GOCHAT_EVENT_LOOP=uvloop, but uvloop is not installed" in result.stderr
    assert "listening" not in result.stderr


def test_garbage_certificate_is_a_clear_startup_error(
    tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    """A certificate file full of garbage stops startup with a message naming it, no traceback."""
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("this is not a certificate\n")
    result = run_gochat(cwd=tmp_path, GOCHAT_TLS_CERT=str(garbage), GOCHAT_TLS_KEY=str(cert[1]))
    assert result.returncode != 0, result.stderr
    assert str(garbage) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "listening" not in result.stderr, result.stderr
