"""Promises README.md and docs/ make that no other test checks (issue 11, item 6).

One focused test per promise. In-process where the server alone is the subject;
`python -m gochat` as a subprocess where the promise is about the process (signals,
exit codes, its log). Every wait is for a condition, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest

from gochat.cli import load_config
from gochat.config import Config, ConfigError, settings
from gochat.store.base import Op
from gochat.store.sqlite import SQLiteStore

from .conftest import ROOT, ChatClient, daemon_env, wait_until

START_TIMEOUT = 30.0  # a loaded 2-core machine; the daemon usually starts in under a second
EXIT_TIMEOUT = 15.0
SHUTDOWN_NOTICE = "Server is shutting down. Goodbye!"


# -- helpers ---------------------------------------------------------------------------


class Daemon:
    """`python -m gochat` in a subprocess, its stderr collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.port = 0  # the plain port

    @classmethod
    async def start(cls, cwd: Path, **settings: str) -> Daemon:
        """Start on port 0 (loopback, no .env) and wait until it says where it listens."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gochat",
            "--env-file",
            os.devnull,
            cwd=cwd,
            env=daemon_env(**settings),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        daemon = cls(proc)
        daemon.port = await daemon.listening("plain")
        return daemon

    async def listening(self, listener: str) -> int:
        """The port the daemon's log says `listener` (plain or tls) listens on."""
        match = await self.wait_for(rf"listening \({listener}\) on 127\.0\.0\.1:(\d+)")
        return int(match.group(1))

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode("utf-8", "replace"))
            self._changed.set()
        self._changed.set()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    async def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first log line matching `pattern`, waiting for it up to `timeout`."""
        regex = re.compile(pattern)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            for line in self.lines:
                match = regex.search(line)
                if match:
                    return match
            if self._reader.done():
                raise AssertionError(f"gochat exited without logging {pattern!r}:\n{self.stderr}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {pattern!r} in gochat's log:\n{self.stderr}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def exit_code(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Wait for the process to end and its log to be read; fail after `timeout`."""
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            raise AssertionError(
                f"gochat did not exit within {timeout} s:\n{self.stderr}"
            ) from None
        await asyncio.wait_for(self._reader, 5)
        return code

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        self.proc.send_signal(signum)
        return await self.exit_code()

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)


@pytest.fixture
async def daemon() -> AsyncIterator[list[Daemon]]:
    """Daemons a test starts (`Daemon.start` and append); any still running is killed."""
    running: list[Daemon] = []
    yield running
    for d in running:
        if d.proc.returncode is None:
            await d.kill()


async def start(running: list[Daemon], cwd: Path, **settings: str) -> Daemon:
    d = await Daemon.start(cwd, **settings)
    running.append(d)
    return d


class HeldStore(SQLiteStore):
    """A real SQLite store whose writes wait at `gate`: a shutdown waiting for its last writes."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()
        self.writing = False

    async def write(self, ops: Sequence[Op], touched: Mapping[str, float] | None = None) -> None:
        self.writing = True
        await self.gate.wait()
        await super().write(ops, touched)


def run_gochat(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m gochat ARGS` to completion (for what exits at once: bad settings, --print-env)."""
    return subprocess.run(
        [sys.executable, "-m", "gochat", "--env-file", os.devnull, *args],
        cwd=cwd,
        env=daemon_env(**settings),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )


# -- lobbies and commands (in-process) --------------------------------------------------


async def test_lobby_description_limit_is_200_characters(server, connect):
    """A 200-character description makes the lobby; 201 gets the limit named and no lobby."""
    alice = await connect("alice")
    await alice.send("/create long - " + "d" * 201)
    await alice.expect("Description too long (the limit is 200 characters).")
    assert server.core.lobbies.get("long") is None
    await alice.send("/create long - " + "é" * 200)  # characters, not bytes
    await alice.expect("Lobby #long created (public)")
    lobby = server.core.lobbies.get("long")
    assert lobby is not None and lobby.description == "é" * 200


async def test_lobby_password_limit_is_72_bytes(connect):
    """A 72-byte password makes a private lobby; 73 bytes (37 characters) get the limit named."""
    alice = await connect("alice")
    await alice.send("/create vault " + "é" * 36 + "x too long")  # 37 characters, 73 bytes
    await alice.expect("Password too long (the limit is 72 bytes).")
    await alice.send("/create vault " + "é" * 36 + " just right")  # 72 bytes
    await alice.expect("Lobby #vault created (private")
    bob = await connect("bob")
    await bob.send("/join vault " + "é" * 36 + "x")
    await bob.expect("Password too long (the limit is 72 bytes).")
    await bob.send("/join vault " + "é" * 36)
    await bob.expect("You are now in #vault")


async def test_duplicate_lobby_name_across_case_names_the_existing_lobby(server, connect):
    """`/create Dev` when #dev exists is refused, naming #dev as it is spelt."""
    alice = await connect("alice")
    await alice.send("/create dev")
    await alice.expect("Lobby #dev created")
    bob = await connect("bob")
    await bob.send("/create Dev tooling - talk")
    await bob.expect("Lobby #dev already exists. Use /join dev.")
    assert [lobby.name for lobby in server.core.lobbies] == ["general", "dev"]


async def test_double_slash_says_a_line_starting_with_slash(connect):
    """`//help` is said to the lobby as `/help`, and /help is not run."""
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.send("//help")
    await bob.expect("alice [")
    await bob.expect("╰─> /help\r\n")
    said = await alice.expect("╰─> /help\r\n")
    assert "Commands" not in said


async def test_history_shows_at_most_200_even_when_the_ring_holds_more(make_server):
    """With a 300-message ring and 250 messages, `/history 5000` shows the newest 200."""
    server = await make_server(replay_max=300, rate_messages=0)
    alice = await (await ChatClient.connect(server.ports["plain"])).login("alice")
    try:
        alice.writer.write(b"".join(b"m%d\r\n" % i for i in range(250)))
        await alice.expect("╰─> m249\r\n")
        assert len(server.core.lobbies.general.history) == 250  # the ring holds them all
        await alice.send("/history 5000")
        shown = await alice.expect("end of history")
        assert shown.count("╰─>") == 200
        assert "╰─> m50\r\n" in shown and "╰─> m249\r\n" in shown
        assert "╰─> m49\r\n" not in shown
    finally:
        await alice.close()


async def test_blank_line_pourer_is_never_disconnected(make_server):
    """5,000 blank lines (rate limit 5 a window, flood at 100) cost nothing; chat goes on."""
    server = await make_server()
    port = server.ports["plain"]
    alice = await (await ChatClient.connect(port)).login("alice")
    bob = await (await ChatClient.connect(port)).login("bob")
    try:
        alice.writer.write(b"\r\n   \r\n\n \t\r\n" * 1250)
        await alice.send("still here")
        await bob.expect("╰─> still here\r\n")
        text = await alice.expect("╰─> still here\r\n")
        assert "Rate limited" not in text and "flooding" not in text
        assert not alice.closed
    finally:
        await alice.close()
        await bob.close()


async def test_ssh_client_on_the_plain_port_gets_one_line_and_a_close(connect):
    """An SSH client's greeting gets the one "plain-text chat port" line, then the close."""
    client = await connect()
    await client.send("SSH-2.0-OpenSSH_9.6")
    text = await client.read_until_closed()
    banner, _, after = text.partition("Enter your username: ")
    assert "plain-text chat port" not in banner
    assert after.count("\n") == 1 and after.endswith("\n"), after
    assert "This is a plain-text chat port, not an SSH server" in after


async def test_no_new_connection_is_accepted_while_shutting_down(make_server, tmp_path):
    """While shutdown waits for the store, a new connection is refused or told it is closing."""
    store = HeldStore(str(tmp_path / "held.db"))
    server = await make_server(store=store)
    port = server.ports["plain"]
    alice = await (await ChatClient.connect(port)).login("alice")
    await alice.send("a line for the store")
    await wait_until(lambda: store.writing, what="the store write to start")
    shutdown = asyncio.create_task(server.shutdown())
    try:
        assert SHUTDOWN_NOTICE in await alice.read_until_closed()
        assert not shutdown.done()  # held: the store has not taken the write
        try:
            late = await ChatClient.connect(port)
        except ConnectionRefusedError:
            pass  # the listener is closed
        else:
            text = await late.read_until_closed()
            await late.close()
            assert "Enter your username" not in text
            assert SHUTDOWN_NOTICE in text
        assert not shutdown.done()
    finally:
        store.gate.set()
        await asyncio.wait_for(shutdown, EXIT_TIMEOUT)
        await alice.close()


# -- settings (in-process and `python -m gochat`) ------------------------------------


def test_dot_env_is_read_and_real_environment_wins(tmp_path, monkeypatch):
    """A .env in the working directory is read; a variable also set for real keeps that value."""
    for f, _ in settings():
        monkeypatch.delenv(f.metadata["env"], raising=False)
    (tmp_path / ".env").write_text(
        "GOCHAT_PORT=4321\nGOCHAT_MAX_MESSAGE=333\nGOCHAT_DB=none\n", encoding="utf-8"
    )
    monkeypatch.setenv("GOCHAT_MAX_MESSAGE", "777")
    monkeypatch.chdir(tmp_path)
    config = load_config([])
    assert config.port == 4321  # from .env
    assert config.max_message == 777  # the real environment wins
    assert os.environ["GOCHAT_MAX_MESSAGE"] == "777"


def test_print_env_is_every_setting_commented_and_is_env_example(tmp_path):
    """`--print-env` exits 0 with every setting commented out at its default, as .env.example."""
    result = run_gochat(tmp_path, "--print-env")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text == (Path(ROOT) / ".env.example").read_text(encoding="utf-8")
    assert all(not line or line.startswith("#") for line in text.splitlines())
    values = dict(
        line[1:].split("=", 1) for line in text.splitlines() if re.match(r"#[A-Z_]+=", line)
    )
    assert [f.metadata["env"] for f, _ in settings()] == list(values)
    assert Config.from_env(values) == Config()  # uncommented, the template is the defaults


def test_bcrypt_rounds_4_to_16(tmp_path):
    """GOCHAT_BCRYPT_ROUNDS 3 and 17 stop gochat with exit 2 and one line naming it; 4, 16 run."""
    for bad in ("3", "17"):
        result = run_gochat(tmp_path, GOCHAT_BCRYPT_ROUNDS=bad, GOCHAT_DB="none")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and f"GOCHAT_BCRYPT_ROUNDS={bad}" in lines[0], lines
        with pytest.raises(ConfigError, match="GOCHAT_BCRYPT_ROUNDS"):
            Config.from_env({"GOCHAT_BCRYPT_ROUNDS": bad})
    for good in (4, 16):
        assert Config.from_env({"GOCHAT_BCRYPT_ROUNDS": str(good)}).bcrypt_rounds == good


# -- the daemon: signals, logs, TLS ------------------------------------------------------


async def test_sigint_is_a_graceful_shutdown(daemon, tmp_path):
    """SIGINT: every client gets the goodbye, the store is flushed, exit 0."""
    db = tmp_path / "gochat.db"
    d = await start(daemon, tmp_path, GOCHAT_DB=str(db), GOCHAT_FLUSH_MS="60000")
    alice = await (await ChatClient.connect(d.port)).login("alice")
    try:
        await alice.send("said just before the signal")
        await alice.expect("╰─> said just before the signal")
        d.proc.send_signal(signal.SIGINT)
        assert SHUTDOWN_NOTICE in await alice.read_until_closed()
        assert await d.exit_code() == 0
    finally:
        await alice.close()
    assert "SIGINT received: shutting down" in d.stderr
    assert "store: all writes saved" in d.stderr and "shutdown complete" in d.stderr
    assert "Traceback" not in d.stderr
    with contextlib.closing(sqlite3.connect(db)) as check:
        bodies = [row[0] for row in check.execute("SELECT body FROM messages")]
    assert bodies == ["said just before the signal"]  # written at shutdown, not by a flush


async def test_second_signal_exits_at_once(daemon, tmp_path):
    """A second SIGINT while shutdown waits (the store locked, 60 s allowed) exits 1 at once."""
    db = tmp_path / "gochat.db"
    d = await start(
        daemon,
        tmp_path,
        GOCHAT_DB=str(db),
        GOCHAT_SHUTDOWN_GRACE="60",
        GOCHAT_STORE_CLOSE_TIMEOUT="60",
    )
    alice = await (await ChatClient.connect(d.port)).login("alice")
    lock = sqlite3.connect(db, timeout=EXIT_TIMEOUT, isolation_level=None, check_same_thread=False)
    try:
        await asyncio.to_thread(lock.execute, "BEGIN IMMEDIATE")  # the daemon cannot write
        await alice.send("a line the store cannot take")
        await alice.expect("╰─> a line the store cannot take")
        d.proc.send_signal(signal.SIGINT)
        assert SHUTDOWN_NOTICE in await alice.read_until_closed()
        await d.wait_for("shutting down: ")
        d.proc.send_signal(signal.SIGINT)
        assert await d.exit_code() == 1
    finally:
        lock.close()
        await alice.close()
    assert "second SIGINT: exiting now" in d.stderr
    assert "shutdown complete" not in d.stderr


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_log_has_no_passwords_and_bodies_only_at_debug(daemon, tmp_path, level):
    """Passwords and the API key never reach the log; message bodies only at DEBUG."""
    d = await start(
        daemon,
        tmp_path,
        GOCHAT_DB="none",
        GOCHAT_LOG_LEVEL=level,
        GEMINI_API_KEY="apikey-b6d1e9",
        GOCHAT_AI_BASE_URL="http://127.0.0.1:9",  # never called: no /ai here
    )
    port = d.port
    alice = await (await ChatClient.connect(port)).login("alice")
    bob = await (await ChatClient.connect(port)).login("bob")
    try:
        await alice.send("/create vault pw-right-7f3a the vault")
        await alice.expect("Lobby #vault created (private")
        await bob.send("/join vault pw-wrong-91c2")
        await bob.expect("Wrong password for #vault.")
        await bob.send("/join vault pw-right-7f3a")
        await bob.expect("You are now in #vault")
        await alice.send("body-marker-5e0b")
        await bob.expect("╰─> body-marker-5e0b")
        await alice.send("/msg bob dm-marker-a4c8")
        await bob.expect("dm-marker-a4c8")
        await alice.send("/quit")
        await alice.read_until_closed()
        assert await d.stop() == 0
    finally:
        await alice.close()
        await bob.close()
    log = d.stderr
    assert "lobby vault created by alice (private)" in log  # the log is there, and says things
    for secret in ("pw-right-7f3a", "pw-wrong-91c2", "apikey-b6d1e9"):
        assert secret not in log, secret
    for body in ("body-marker-5e0b", "dm-marker-a4c8"):
        assert (body in log) == (level == "DEBUG"), body


async def test_plain_text_on_the_tls_port_is_not_an_error(daemon, tmp_path, cert):
    """`hello` sent to the TLS port: the handshake fails, the connection closes, no ERROR logged."""
    crt, key = cert
    d = await start(
        daemon, tmp_path, GOCHAT_DB="none", GOCHAT_TLS_CERT=str(crt), GOCHAT_TLS_KEY=str(key)
    )
    client = await ChatClient.connect(await d.listening("tls"))
    try:
        await client.send("hello")
        await client.read_until_closed()
    finally:
        await client.close()
    assert await d.stop() == 0
    # The failed handshake is counted in the activity line shutdown writes, not an error.
    assert re.search(r"activity: 1 connections, .* 1 disconnects \(connection reset 1\)", d.stderr)
    assert not re.search(r"\b(ERROR|CRITICAL)\b", d.stderr), d.stderr
    assert "Traceback" not in d.stderr
