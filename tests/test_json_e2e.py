"""The JSON-lines front end over real sockets: a bot and an nc user in the same chat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from typing import Any

import pytest

from .conftest import ChatClient, free_port, tls_client_context

TIMEOUT = 5.0


class Bot:
    """A JSON-lines client: sends objects, reads objects, checks `seq` has no gap."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seq = 0
        self.seen: list[dict[str, Any]] = []

    @classmethod
    async def connect(cls, port: int) -> Bot:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
        return cls(reader, writer)

    async def send(self, obj: dict[str, Any] | bytes) -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.writer.write(data + b"\n")
        await self.writer.drain()

    async def next(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), TIMEOUT)
        assert line.endswith(b"\n"), f"connection closed; saw {self.seen[-3:]}"
        obj = json.loads(line)
        self.seq += 1
        assert obj["seq"] == self.seq, obj  # numbered from 1, no gap
        assert b"\x1b" not in line
        self.seen.append(obj)
        return obj

    async def until(self, **fields: Any) -> dict[str, Any]:
        """Read until an object with these fields arrives; return it."""
        while True:
            obj = await self.next()
            if all(obj.get(k) == v for k, v in fields.items()):
                return obj

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@pytest.fixture
async def server(make_server):
    return await make_server(json_port=free_port())


async def logged_in_bot(server, name: str) -> Bot:
    bot = await Bot.connect(server.ports["json"])
    hello = await bot.next()
    assert (hello["type"], hello["server"], hello["protocol"]) == ("hello", "gochat", 1)
    await bot.send({"cmd": "login", "name": name, "id": "in"})
    welcome = await bot.until(type="welcome")
    assert (welcome["name"], welcome["lobby"]) == (name, "general")
    await bot.until(type="ok", re="in")
    return bot


@pytest.mark.skipif(shutil.which("nc") is None, reason="nc is installed by scripts/test")
async def test_a_bot_and_an_nc_user_talk(server):
    """The bot's line reaches nc as text; the nc user's reaches the bot as a message object."""
    bot = await logged_in_bot(server, "beep")
    nc = await asyncio.create_subprocess_exec(
        "nc",
        "127.0.0.1",
        str(server.ports["plain"]),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert nc.stdin is not None and nc.stdout is not None
    try:
        await asyncio.wait_for(nc.stdout.readuntil(b"Enter your username: "), TIMEOUT)
        nc.stdin.write(b"ncuser\n")
        await asyncio.wait_for(nc.stdout.readuntil(b"Welcome, ncuser!"), TIMEOUT)
        arrived = await bot.until(type="presence", name="ncuser")
        assert arrived["move"] == "connected"
        await bot.send({"cmd": "say", "text": "hello from a bot \u001b[2J", "id": 7})
        own = await bot.until(type="message", lobby="general")
        await bot.until(type="ok", re=7)
        text = await asyncio.wait_for(nc.stdout.readuntil(b"hello from a bot"), TIMEOUT)
        assert b"beep [" in text
        tail = await asyncio.wait_for(nc.stdout.readuntil(b"\n"), TIMEOUT)
        assert b"\x1b" not in tail and b"[2J" not in tail  # cleaned at the door
        nc.stdin.write(b"hi bot\n")
        message = await bot.until(type="message", text="hi bot")
        assert (message["from"], message["lobby"]) == ("ncuser", "general")
        assert isinstance(message["ts"], float)
        assert isinstance(message["id"], int) and message["id"] > own["id"] > 0
        await bot.send({"cmd": "history", "id": 8})
        history = await bot.until(type="history")
        assert [m["id"] for m in history["messages"]] == [own["id"], message["id"]]
    finally:
        nc.kill()
        await nc.wait()
        await bot.close()


async def test_bad_input_gets_one_error_each_and_the_connection_stays(server):
    """Not JSON, not an object, unknown command, wrong types, too deep, too long: one
    error object each, with the id when it could be read; then a ping still works."""
    bot = await logged_in_bot(server, "tester")
    cases: list[tuple[bytes | dict[str, Any], str]] = [
        (b"this is not json", "bad_json"),
        (b"[1, 2, 3]", "not_an_object"),
        ({"cmd": "teleport", "id": 1}, "unknown_command"),
        ({"cmd": "say", "text": 42, "id": 2}, "bad_argument"),
        ({"cmd": "say", "id": 3}, "bad_argument"),
        (b'{"cmd":"say","text":' + b"[" * 50 + b"]" * 50 + b"}", "too_deep"),
        (b'{"cmd":"say","text":"' + b"x" * 9000 + b'"}', "line_too_long"),
    ]
    for request, code in cases:
        await bot.send(request)
        error = await bot.until(type="error")
        assert error["code"] == code, (request, error)
        if isinstance(request, dict):
            assert error["re"] == request["id"]
    await bot.send({"cmd": "ping", "id": "still-here"})
    await bot.until(type="ok", re="still-here")
    await bot.close()


async def test_login_rules(server, connect):
    """Commands before login, a taken name (held by a text user), a second login."""
    await connect("alice")
    bot = await Bot.connect(server.ports["json"])
    await bot.until(type="hello")
    await bot.send({"cmd": "say", "text": "too early", "id": 1})
    assert (await bot.until(type="error"))["code"] == "not_logged_in"
    await bot.send({"cmd": "login", "name": "ALICE", "id": 2})
    assert (await bot.until(type="error"))["code"] == "name_taken"
    await bot.send({"cmd": "login", "name": "x", "id": 3})
    assert (await bot.until(type="error"))["code"] == "bad_name"
    await bot.send({"cmd": "login", "name": "bob", "id": 4})
    await bot.until(type="ok", re=4)
    await bot.send({"cmd": "login", "name": "carol", "id": 5})
    assert (await bot.until(type="error", re=5))["code"] == "already_logged_in"
    await bot.close()


async def test_commands_results_and_refusals(server):
    """Typed results come before the ok; a refused command is an error with its id."""
    bot = await logged_in_bot(server, "beep")
    await bot.send({"cmd": "create", "name": "vault", "password": "s3cret", "id": "c"})
    await bot.until(type="ok", re="c")
    assert server.core.lobbies.get("vault").private
    await bot.send({"cmd": "users", "id": "u"})
    members = await bot.until(type="members")
    assert members["lobby"] == "vault" and members["you"] == "beep"
    await bot.until(type="ok", re="u")
    await bot.send({"cmd": "join", "lobby": "nowhere", "id": "j"})
    error = await bot.until(type="error", re="j")
    assert error["code"] == "not_found" and "not found" in error["text"]
    await bot.send({"cmd": "quit", "id": "q"})
    assert (await bot.until(type="farewell"))["text"]
    assert await asyncio.wait_for(bot.reader.read(), TIMEOUT) == b""
    await bot.close()


async def test_rate_limit_is_shared_and_says_when(make_server):
    """The sixth line in a window is refused with retry_after; every refusal is answered."""
    server = await make_server(json_port=free_port(), rate_messages=5)
    bot = await logged_in_bot(server, "chatty")
    for i in range(5):
        await bot.send({"cmd": "say", "text": f"m{i}", "id": i})
        await bot.until(type="ok", re=i)
    for i in (5, 6):
        await bot.send({"cmd": "say", "text": f"m{i}", "id": i})
        error = await bot.until(type="error", re=i)
        assert error["code"] == "rate_limited" and 1 <= error["retry_after"] <= 10
    await bot.close()


async def test_text_users_see_json_users(server):
    """A text user in the lobby sees the bot arrive and speak, in their own dialect."""
    alice = await ChatClient.connect(server.ports["plain"])
    await alice.login("alice")
    bot = await logged_in_bot(server, "beep")
    await alice.expect("beep joined the chat")
    await bot.send({"cmd": "msg", "to": "alice", "text": "psst", "id": 1})
    await bot.until(type="ok", re=1)
    await alice.expect("[DM] 🙂 beep → alice: psst")
    await alice.close()
    await bot.close()


async def test_json_over_tls(make_server, cert):
    """GOCHAT_JSON_TLS_PORT speaks the same protocol inside TLS."""
    server = await make_server(
        tls_cert=str(cert[0]), tls_key=str(cert[1]), json_tls_port=free_port()
    )
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.ports["json_tls"], ssl=tls_client_context()
    )
    bot = Bot(reader, writer)
    assert (await bot.next())["type"] == "hello"
    await bot.send({"cmd": "login", "name": "secure", "id": 1})
    await bot.until(type="ok", re=1)
    await bot.send({"cmd": "quit"})
    await bot.until(type="farewell")
    await bot.close()


async def test_refusals_carry_stable_codes(server):
    """not_found, wrong_password, too_long and unavailable, as docs/protocol.md lists them."""
    owner = await logged_in_bot(server, "owner")
    await owner.send({"cmd": "create", "name": "vault", "password": "s3cret", "id": 1})
    await owner.until(type="ok", re=1)
    bot = await logged_in_bot(server, "beep")
    requests = [
        ({"cmd": "join", "lobby": "nowhere"}, "not_found"),
        ({"cmd": "msg", "to": "nobody", "text": "hi"}, "not_found"),
        ({"cmd": "join", "lobby": "vault", "password": "wrong"}, "wrong_password"),
        ({"cmd": "say", "text": "x" * (server.config.max_message + 1)}, "too_long"),
        ({"cmd": "ai", "question": "anyone?"}, "unavailable"),
        ({"cmd": "sp", "picture": "nosuch"}, "not_found"),
    ]
    for number, (request, code) in enumerate(requests):
        await bot.send({**request, "id": number})
        error = await bot.until(type="error", re=number)
        assert error["code"] == code, (request, error)
    await bot.close()
    await owner.close()


async def test_create_takes_the_password_as_given(server):
    """JSON names its arguments: a password of "-" is a password, not the text port's
    "no password" word, and no password at all is a public lobby."""
    bot = await logged_in_bot(server, "maker")
    await bot.send({"cmd": "create", "name": "dashed", "password": "-", "id": 1})
    await bot.until(type="ok", re=1)
    await bot.send({"cmd": "create", "name": "open", "description": "- not a password", "id": 2})
    await bot.until(type="ok", re=2)
    dashed, open_lobby = server.core.lobbies.get("dashed"), server.core.lobbies.get("open")
    assert dashed.private and not open_lobby.private
    assert open_lobby.description == "- not a password"
    await bot.close()


async def test_setai_outside_your_lobby_is_forbidden(make_server):
    """The table says only a lobby's creator may set Rox's persona: `forbidden`, with why.
    (Setting a persona calls no model, so the AI's address is never reached.)"""
    server = await make_server(
        json_port=free_port(), ai_api_key="test-key", ai_base_url="http://127.0.0.1:9"
    )
    owner = await logged_in_bot(server, "owner")
    await owner.send({"cmd": "create", "name": "den", "id": 1})
    await owner.until(type="ok", re=1)
    bot = await logged_in_bot(server, "other")
    await bot.send({"cmd": "setai", "prompt": "be rude", "id": 2})
    error = await bot.until(type="error", re=2)
    assert error["code"] == "forbidden" and "general" in error["text"]
    await bot.send({"cmd": "join", "lobby": "den", "id": 3})
    await bot.until(type="ok", re=3)
    await bot.send({"cmd": "setai", "prompt": "be rude", "id": 4})
    error = await bot.until(type="error", re=4)
    assert error["code"] == "forbidden" and "Only owner" in error["text"]
    assert server.core.lobbies.get("den").persona is None
    await bot.close()
    await owner.close()
