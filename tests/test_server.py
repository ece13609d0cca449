"""End to end over real sockets against a server started in-process on port 0."""

from __future__ import annotations

import asyncio
import re
import socket

import pytest

from gochat import sockets as sockets_module
from gochat.commands import REGISTRY
from gochat.profiles import PICTURES

from .conftest import ChatClient, FakeClock, loopback_alias_works, wait_until


async def test_banner_then_prompt_at_once(connect):
    """The banner and the name prompt arrive without the client sending anything."""
    client = await connect()
    text = await client.expect("Enter your username: ", timeout=2)
    assert "Welcome to gochat" in text


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a", "2-20 characters"),
        ("bad name!", "2-20 characters"),
        ("x" * 21, "2-20 characters"),
        ("Rox", "reserved"),
        ("ADMIN", "reserved"),
    ],
)
async def test_refused_names_get_reason_and_prompt_again(connect, name, reason):
    """An invalid or reserved name is refused with the reason, then the prompt again."""
    client = await connect()
    await client.expect("Enter your username: ")
    await client.send(name)
    await client.expect(reason)
    await client.expect("Enter your username: ")
    await client.send("valid_name-1")
    await client.expect("Welcome, valid_name-1!")


async def test_quit_at_name_prompt(connect):
    """/quit works before a name is chosen."""
    client = await connect()
    await client.expect("Enter your username: ")
    await client.send("/quit")
    assert "Goodbye!" in await client.read_until_closed()


async def test_taken_name_case_insensitive(connect):
    """'ALICE' is refused while 'alice' is online."""
    await connect("alice")
    twin = await connect()
    await twin.expect("Enter your username: ")
    await twin.send("ALICE")
    await twin.expect("is taken")
    await twin.expect("Enter your username: ")


async def test_history_replay_on_login(make_server):
    """A user arriving later sees the lobby's recent lines with their times."""
    clock = FakeClock()
    server = await make_server(clock=clock)
    alice = await ChatClient.connect(server.ports["plain"])
    await alice.login("alice")
    await alice.send("first post")
    await alice.expect("╰─> first post")
    clock.advance(125)
    bob = await ChatClient.connect(server.ports["plain"])
    await bob.expect("Enter your username: ")
    await bob.send("bob")
    text = await bob.expect("end of history")
    assert "recent messages in #general" in text
    assert "alice [22:13]\r\n  ╰─> first post" in text
    await alice.close()
    await bob.close()


async def test_private_lobby_wrong_and_right_password(connect):
    """A wrong password is refused without detail; the right one lets you in."""
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.send("/create vault s3cret The vault")
    await alice.expect("Lobby #vault created (private")
    await bob.send("/lobbies")
    listing = await bob.expect("The vault")
    assert "#vault" in listing and "private" in listing
    await bob.send("/join vault")
    await bob.expect("#vault is private: /join vault <password>")
    await bob.send("/join vault wrong")
    reply = await bob.expect("Wrong password for #vault.")
    assert "$2b$" not in reply
    await bob.send("/join vault s3cret")
    await bob.expect("You are now in #vault")
    await alice.expect("bob joined from #general")


async def test_no_pass_is_public(connect):
    """`no-pass` makes a public lobby, not a lobby whose password is 'no-pass'."""
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.send("/create games no-pass Board games night")
    await alice.expect("Lobby #games created (public).")
    await bob.send("/join games")
    await bob.expect("You are now in #games: Board games night")


async def test_join_leave_announced_in_both_lobbies(connect):
    """Moving lobbies is announced where you left and where you arrived."""
    alice = await connect("alice")
    bob = await connect("bob")
    carol = await connect("carol")
    await carol.send("/create den")
    await carol.expect("You are now in #den")
    await alice.expect("carol went to #den")
    await bob.send("/join den")
    await alice.expect("bob went to #den")
    await carol.expect("bob joined from #general")


async def test_rate_limit_notice_and_reset(make_server):
    """The sixth message in ten seconds is refused with a wait; after the window it flows."""
    monotonic = FakeClock(1000.0)
    server = await make_server(monotonic=monotonic)
    alice = await (await ChatClient.connect(server.ports["plain"])).login("alice")
    for i in range(5):
        await alice.send(f"m{i}")
        await alice.expect(f"╰─> m{i}")
    await alice.send("m5")
    await alice.expect("⚠ Rate limited! Wait 10 seconds.")
    await alice.send("m6")
    await alice.send("/help")  # free command: proves m6 was handled before time moves
    await alice.expect("Any other line")
    monotonic.advance(10)
    await alice.send("m7")
    text = await alice.expect("╰─> m7")
    assert "m5" not in text and "m6" not in text
    assert "Rate limited" not in text
    await alice.close()


async def test_flooder_is_disconnected(make_server):
    """A client that keeps sending far past the limit is told once, then disconnected."""
    server = await make_server(rate_messages=2, flood_factor=3)
    flooder = await (await ChatClient.connect(server.ports["plain"])).login("flood")
    flooder.writer.write(b"".join(b"spam %d\r\n" % i for i in range(50)))
    text = await flooder.read_until_closed()
    assert text.count("Rate limited!") == 1
    assert "Disconnected for flooding" in text
    await wait_until(lambda: server.stats()["connections"] == 0, what="flooder gone")


@pytest.mark.skipif(not loopback_alias_works("127.0.0.2"), reason="no 127.0.0.2 on this host")
async def test_eleventh_connection_from_one_ip_refused(server):
    """The 11th connection from 127.0.0.1 is refused; 127.0.0.2 is still accepted."""
    port = server.ports["plain"]
    clients = [await ChatClient.connect(port) for _ in range(10)]
    for client in clients:
        await client.expect("Enter your username: ")
    extra = await ChatClient.connect(port)
    text = await extra.read_until_closed()
    assert "Too many connections from your IP. Try again later." in text
    other = await ChatClient.connect(port, local="127.0.0.2")
    await other.expect("Enter your username: ")
    assert server.stats()["connections"] == 11
    for client in [*clients, extra, other]:
        await client.close()
    await wait_until(lambda: server.stats()["counted"] == 0, what="counters back to zero")
    assert server.stats()["ip_keys"] == 0


async def test_total_connection_cap(make_server):
    """GOCHAT_MAX_CONNECTIONS refuses the next client with a clear line."""
    server = await make_server(max_connections=2, max_conn_per_ip=0)
    port = server.ports["plain"]
    a = await ChatClient.connect(port)
    b = await ChatClient.connect(port)
    await a.expect("Enter your username: ")
    await b.expect("Enter your username: ")
    c = await ChatClient.connect(port)
    assert "The server is full" in await c.read_until_closed()
    for client in (a, b, c):
        await client.close()


async def test_escape_sequences_never_reach_other_users(connect):
    """OSC 52, CSI 2J, 8-bit CSI and RLO are stripped before relay."""
    alice = await connect("alice")
    bob = await connect("bob")
    payload = "a\x1b]52;c;ZXZpbA==\x07b\x1b[2Jc\x9b31md\u202ee".encode()
    await alice.send(payload)
    text = await bob.expect("╰─> abcde")
    tail = text.split("alice [")[-1]
    for bad in ("\x1b", "\x9b", "\u202e", "52;c", "[2J"):
        assert bad not in tail


async def test_megabyte_without_newline_then_normal_line(connect):
    """1 MB with no newline is discarded with one notice; the next line goes through."""
    alice = await connect("alice")
    bob = await connect("bob")
    alice.writer.write(b"x" * 1_000_000)
    await alice.send(b"\r\nstill here")
    text = await alice.expect("╰─> still here")
    assert text.count("Line too long: the limit is 8192 bytes") == 1
    bob_text = await bob.expect("╰─> still here")
    assert "xxxx" not in bob_text


async def test_message_over_limit_refused(make_server):
    """A message longer than GOCHAT_MAX_MESSAGE is refused with the limit."""
    server = await make_server(max_message=20)
    alice = await (await ChatClient.connect(server.ports["plain"])).login("alice")
    await alice.send("y" * 21)
    await alice.expect("the limit is 20")
    await alice.close()


async def test_slow_reader_others_receive_in_order(make_server):
    """Every one of the 2000 lines reaches a healthy reader, in order, while one that stopped
    reading is shed once it has taken nothing for GOCHAT_STALL_TIMEOUT."""
    server = await make_server(rate_messages=0, stall_timeout=1.0, socket_sndbuf=8192)
    port = server.ports["plain"]
    sender = await (await ChatClient.connect(port)).login("sender")
    reader = await (await ChatClient.connect(port)).login("reader")
    slow_sock = socket.socket()
    slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(slow_sock, ("127.0.0.1", port))
    slow = ChatClient(*await asyncio.open_connection(sock=slow_sock))
    await slow.login("slowpoke")
    slow.reader._transport.pause_reading()  # type: ignore[attr-defined]
    await reader.expect("slowpoke joined the chat")
    count = 2000
    sender.writer.write(b"".join(f"n{i:05d} {'q' * 400}\r\n".encode() for i in range(count)))
    await sender.writer.drain()
    text = await reader.expect(f"╰─> n{count - 1:05d} ", timeout=30)
    seen = [int(part[1:6]) for part in text.split("╰─> ")[1:]]
    assert seen == list(range(count))
    await wait_until(lambda: "slowpoke" not in server.core.clients, what="slow client dropped")
    assert server.core.counters.disconnects["stalled"] == 1
    assert "sender" in server.core.clients and "reader" in server.core.clients
    for client in (sender, reader, slow):
        await client.close()


async def test_close_at_name_prompt_costs_nothing(server):
    """A client that leaves at the prompt leaves no session, counter or task behind."""
    clients = [await ChatClient.connect(server.ports["plain"]) for _ in range(5)]
    for client in clients:
        await client.expect("Enter your username: ")
        await client.close()
    await wait_until(lambda: server.stats()["connections"] == 0, what="sessions released")
    stats = server.stats()
    assert stats["counted"] == 0 and stats["ip_keys"] == 0 and stats["clients"] == 0


async def test_name_timeout(make_server):
    """No name within GOCHAT_NAME_TIMEOUT: a line saying why, then close."""
    server = await make_server(name_timeout=0.3)
    client = await ChatClient.connect(server.ports["plain"])
    text = await client.read_until_closed(timeout=5)
    assert "No name chosen within 0.3 seconds" in text
    await wait_until(lambda: server.stats()["connections"] == 0, what="session released")


async def test_idle_timeout(make_server):
    """A logged-in user silent for GOCHAT_IDLE_TIMEOUT is told why and disconnected."""
    server = await make_server(idle_timeout=0.4)
    client = await (await ChatClient.connect(server.ports["plain"])).login("sleepy")
    text = await client.read_until_closed(timeout=5)
    assert "Disconnected after 0.4 seconds of inactivity" in text
    assert "sleepy" not in server.core.clients


async def test_help_comes_from_the_registry(connect):
    """/help lists every text command with its usage (the AI ones need a key); the JSON
    port's own (login, say, ping) are not shown to nc users."""
    alice = await connect("alice")
    await alice.send("/help")
    text = await alice.expect("Any other line")
    for command in REGISTRY:
        listed = command.offered_in("text") and not command.needs_ai
        assert (command.usage in text) is listed, command.name


async def test_usage_and_unknown_command(connect):
    """A wrong call gets the command's usage; an unknown command says so."""
    alice = await connect("alice")
    await alice.send("/msg bob")
    await alice.expect("Usage: /msg <user> <text>")
    await alice.send("/color maybe")
    await alice.expect("Usage: /color on|off")
    await alice.send("/frobnicate")
    await alice.expect("Unknown command /frobnicate. Type /help for the list.")


async def test_dm_tag_and_user_not_found(connect):
    """/msg and /tag reach their target; an unknown user gets 'User not found.'."""
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.send("/msg bob secret plans")
    await bob.expect("[DM] 🙂 alice → bob: secret plans")
    await alice.expect("alice → bob: secret plans")
    await alice.send("/tag bob look")
    await bob.expect("╰─> @bob look")
    await bob.send("/join #general")  # a round trip: the tag had no second, bell line
    assert "tagged you" not in await bob.expect("You are already in #general.")
    await alice.send("/msg nobody hi")
    await alice.expect("User not found.")


async def test_users_and_profile_pictures(connect):
    """/sp list offers the README's 64 pictures; /sp sets one that /users shows; /sp default
    resets."""
    assert len(PICTURES) == 64  # README: "set your profile picture (64 to choose from)"
    assert len(set(PICTURES.values())) == 64
    alice = await connect("alice")
    await alice.send("/sp list")
    await alice.expect("Profile pictures (64): /sp <name>")
    await alice.send("/sp fox")  # the reply marks the end of the list
    listing = await alice.expect("Your profile picture is now 🦊")
    shown = re.findall(r"(\S+) (\w+)", listing.split("Your profile picture")[0])
    assert [name for _, name in shown] == list(PICTURES)
    assert dict((name, pic) for pic, name in shown) == PICTURES
    await alice.send("/users")
    await alice.expect("🦊 alice (you)")
    await alice.send("/sp nosuch")
    await alice.expect("No picture called 'nosuch'")
    await alice.send("/sp default")
    await alice.expect("Your profile picture is now 🙂")


async def test_colour_switch(connect):
    """/color on brings ANSI codes; /color off removes every escape sequence."""
    alice = await connect("alice")
    await alice.send("/color on")
    await alice.send("tinted")
    text = await alice.expect("tinted")
    assert "\x1b[" in text
    await alice.send("/color off")
    await alice.expect("Colour off.")
    await alice.send("plain")
    text = await alice.expect("╰─> plain")
    assert "\x1b" not in text


async def test_quit_says_goodbye(connect, server):
    """/quit says goodbye, closes, and the lobby is told."""
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.send("/quit")
    assert "Goodbye!" in await alice.read_until_closed()
    await bob.expect("alice left the chat")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", "plain-text chat port"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.0 400 Bad Request"),
    ],
)
async def test_foreign_protocol_on_plain_port(connect, payload, expected):
    """A TLS ClientHello or an HTTP request gets one explanatory line and a close."""
    client = await connect()
    client.writer.write(payload)
    assert expected in await client.read_until_closed()


async def test_telnet_negotiation_is_ignored(connect):
    """IAC sequences around the name are dropped; CR NUL ends the line."""
    client = await connect()
    await client.expect("Enter your username: ")
    client.writer.write(
        b"\xff\xfb\x1f\xff\xfd\x03\xff\xfa\x18\x00xterm\xff\xf0tel\xff\xf1net\r\x00"
    )
    await client.expect("Welcome, telnet!")


async def test_shutdown_tells_everyone(make_server):
    """Shutdown sends the goodbye to every client and closes them."""
    server = await make_server()
    port = server.ports["plain"]
    clients = [await (await ChatClient.connect(port)).login(f"u{i}") for i in range(3)]
    await server.shutdown()
    for client in clients:
        assert "Server is shutting down. Goodbye!" in await client.read_until_closed()
    assert server.stats()["connections"] == 0


async def test_eof_after_commands_still_answered(connect):
    """A client that half-closes after its lines still gets the answers."""
    client = await connect()
    await client.expect("Enter your username: ")
    client.writer.write(b"halfy\r\n/users\r\n")
    client.writer.write_eof()
    text = await client.read_until_closed()
    assert "halfy (you)" in text


async def test_a_client_that_keeps_its_side_open_after_quit_gets_everything_then_a_reset(
    server,
):
    """Like Debian's nc: it never closes on FIN, so it is reset once it holds every byte."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", server.ports["plain"]))
        await loop.sock_sendall(sock, b"keeper\r\n/quit\r\n")
        received = b""
        while data := await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
            received += data
        assert received.decode().endswith("Goodbye! Thanks for chatting.\r\n")
        # FIN came after the last line; our side is still open (CLOSE_WAIT) until the
        # server's reset moves it to CLOSE. recv() cannot show a reset after EOF.
        await wait_until(lambda: tcp_state(sock) == TCP_CLOSE, what="the server's reset")
    finally:
        sock.close()
    await wait_until(lambda: server.stats()["connections"] == 0, what="the session to end")
    assert server.stats()["counted"] == 0


TCP_CLOSE = 7  # linux/tcp_states.h


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


async def test_a_client_that_closes_on_fin_is_not_reset(server, monkeypatch):
    """telnet, socat and s_client close when the server does: no reset for them."""
    dropped: list[object] = []
    monkeypatch.setattr(sockets_module, "drop_closing", dropped.append)
    client = await ChatClient.connect(server.ports["plain"])
    await client.login("closer")
    await client.send("/quit")
    assert "Goodbye! Thanks for chatting." in await client.read_until_closed()
    client.writer.close()  # as those tools do on EOF
    await wait_until(lambda: server.stats()["connections"] == 0, what="the session to end")
    assert dropped == []  # it ended on the client's FIN, not on the server's timer


async def test_lookups_are_free_of_the_message_limit_but_bounded(make_server):
    """/users works after the message budget is spent; listings have their own budget."""
    monotonic = FakeClock(50.0)
    server = await make_server(rate_messages=2, monotonic=monotonic)
    alice = await (await ChatClient.connect(server.ports["plain"])).login("alice")
    for i in range(2):
        await alice.send(f"m{i}")
    await alice.send("m2")
    await alice.expect("Rate limited!")
    for _ in range(8):  # 4 lookups per message of the budget: 8
        await alice.send("/users")
        await alice.expect("alice (you)")
    await alice.send("/lobbies")
    await alice.expect("Rate limited!")
    monotonic.advance(10)
    await alice.send("/lobbies")
    await alice.expect("#general")
    await alice.close()


# -- what a new user tripped on in their first hour (issue 10) -----------------------


@pytest.mark.parametrize(
    ("line", "reply", "access", "description"),
    [
        ("/create music", "Lobby #music created (public).", "public", "No description"),
        ("/create music Jazz", "Lobby #music created (public).", "public", "Jazz"),
        ("/create music no-pass", "Lobby #music created (public).", "public", "No description"),
        ("/create music - smooth jazz", "Lobby #music created (public).", "public", "smooth jazz"),
        ("/create #music no-pass a b", "Lobby #music created (public).", "public", "a b"),
        (
            "/create music relaxing tunes here",
            "Lobby #music created (private: /join music <password>).",
            "private",
            "tunes here",
        ),
    ],
)
async def test_create_forms(connect, line, reply, access, description):
    """Two words are name + description (public); three or more are name, password,
    description (private); `-` or `no-pass` means public; the reply says which."""
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.send(line)
    await alice.expect(reply)
    await bob.send("/lobbies")
    listing = await bob.expect(description)
    row = listing.splitlines()[-1]
    assert "#music" in row and access in row
    await bob.send("/join music")
    if access == "public":
        await bob.expect(f"You are now in #music: {description}")
    else:
        await bob.expect("#music is private: /join music <password>")
        await bob.send("/join music relaxing")
        await bob.expect("You are now in #music")


async def test_help_shows_the_create_forms(connect):
    """/help spells out which /create form makes a public and which a private lobby."""
    alice = await connect("alice")
    await alice.send("/help")
    text = await alice.expect("Any other line")
    assert "/create NAME WORD" in text and "private lobby" in text


async def test_lobby_names_accept_a_leading_hash(connect):
    """/join #dev finds dev; /join # alone is a usage error, not 'Lobby ## not found'."""
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.send("/create #dev")
    await alice.expect("Lobby #dev created (public).")
    await bob.send("/join #DEV")
    await bob.expect("You are now in #dev")
    await bob.send("/join #")
    reply = await bob.expect("Usage: /join")
    assert "##" not in reply


async def test_wrong_passwords_limited_across_connections(make_server):
    """Five wrong guesses from one IP, then a fresh connection is told to wait too."""
    server = await make_server()
    port = server.ports["plain"]
    owner = await (await ChatClient.connect(port)).login("owner")
    await owner.send("/create vault s3cret The vault")
    await owner.expect("Lobby #vault created (private")
    for attempt in range(5):
        guesser = await (await ChatClient.connect(port)).login(f"guesser{attempt}")
        await guesser.send("/join vault nope")
        await guesser.expect("Wrong password for #vault.")
        await guesser.close()
    fresh = await (await ChatClient.connect(port)).login("fresh")
    await fresh.send("/join vault s3cret")
    await fresh.expect("Too many wrong passwords for #vault. Wait 60 seconds.")
    await fresh.close()
    await owner.close()


async def test_wrong_passwords_limited_per_lobby_from_everywhere(make_server):
    """Twenty failures a minute per lobby, whatever the address (here: a fake clock)."""
    server = await make_server(monotonic=FakeClock(100.0))
    guesses = server.lobby_guesses
    for source in range(4):
        for _ in range(5):
            assert guesses.try_attempt("vault", f"198.51.100.{source}", 100.0) == 0.0
    owner = await (await ChatClient.connect(server.ports["plain"])).login("owner")
    await owner.send("/create vault s3cret The vault")
    await owner.expect("Lobby #vault created (private")
    bob = await (await ChatClient.connect(server.ports["plain"])).login("bob")
    await bob.send("/join vault s3cret")
    await bob.expect("Too many wrong passwords for #vault. Wait 60 seconds.")
    await bob.close()
    await owner.close()


async def test_refused_commands_cost_nothing(make_server):
    """Mistakes spend no budget: after them, all five messages still go out."""
    monotonic = FakeClock(1000.0)
    server = await make_server(monotonic=monotonic, max_message=20)
    alice = await (await ChatClient.connect(server.ports["plain"])).login("alice")
    bob = await (await ChatClient.connect(server.ports["plain"])).login("bob")
    await alice.send("/create vault s3cret The vault")
    await alice.expect("Lobby #vault created (private")
    await alice.send("/join general")
    await alice.expect("You are now in #general")
    monotonic.advance(10)  # a fresh budget of 5
    mistakes = [
        ("/join nowhere", "Lobby #nowhere not found."),
        ("/join vault wrong", "Wrong password for #vault."),
        ("/msg nobody hi", "User not found."),
        ("/create vault dup", "Lobby #vault already exists."),
        ("x" * 21, "Message too long"),
        ("/tag alice me", "can't tag yourself"),
        ("/join general", "You are already in #general."),
    ]
    for line, reply in mistakes:
        await alice.send(line)
        await alice.expect(reply)
    for i in range(5):
        await alice.send(f"m{i}")
        await bob.expect(f"╰─> m{i}")
    await alice.send("m5")
    await alice.expect("Rate limited! Wait 10 seconds.")
    await alice.close()
    await bob.close()


async def test_refused_lines_answered_at_most_once_a_second(make_server):
    """While limited every refused line gets the wait, but not more than once a second."""
    monotonic = FakeClock(1000.0)
    server = await make_server(monotonic=monotonic, rate_messages=1)
    alice = await (await ChatClient.connect(server.ports["plain"])).login("alice")
    await alice.send("m0")
    await alice.expect("╰─> m0")
    await alice.send("m1")
    await alice.expect("Rate limited! Wait 10 seconds.")
    await alice.send("m2")  # within the same second: no second answer
    await alice.send("/users")  # a round trip proves m2 was handled
    text = await alice.expect("alice (you)")
    assert "Rate limited" not in text
    monotonic.advance(1)
    await alice.send("m3")
    await alice.expect("Rate limited! Wait 9 seconds.")
    monotonic.advance(8.5)
    await alice.send("m4")
    await alice.expect("Rate limited! Wait 1 second.")
    await alice.close()


async def test_a_paste_is_not_a_flood(make_server):
    """40 pasted lines: 5 go out, the rest are refused with one notice; nobody is dropped."""
    server = await make_server()
    alice = await (await ChatClient.connect(server.ports["plain"])).login("alice")
    bob = await (await ChatClient.connect(server.ports["plain"])).login("bob")
    alice.writer.write(b"".join(b"pasted %02d\r\n" % i for i in range(40)))
    await alice.send("/users")
    text = await alice.expect("alice (you)")
    assert text.count("Rate limited!") == 1
    assert "flooding" not in text
    await bob.expect("╰─> pasted 04")
    await bob.send("/users")
    seen = await bob.expect("bob (you)")
    assert "pasted 05" not in seen and "left the chat" not in seen
    assert server.stats()["clients"] == 2
    await alice.close()
    await bob.close()


async def test_colour_name_prompt_has_no_stray_chat_prompt(make_server):
    """A refused name in colour mode: the reason, then the name prompt, no '> ' between."""
    server = await make_server(color="always")
    client = await ChatClient.connect(server.ports["plain"])
    await client.expect("Enter your username: ")
    await client.send("x")
    text = await client.expect("Enter your username: ")
    assert "> " not in text.replace("\x1b[0m", "")
    await client.close()


async def test_banner_logo_is_whole(connect):
    """The logo starts with its top row: the tops of the h and the t."""
    client = await connect()
    text = await client.expect("Enter your username: ")
    rows = text.split("\r\n")
    top = next(i for i, row in enumerate(rows) if row.strip())
    assert rows[top] == "                   _           _"
    assert rows[top + 1].startswith("   __ _  ___   ___| |__")


# -- what a mutation probe found unguarded (issue 11) ---------------------------------


async def test_direct_messages_spend_the_budget(make_server):
    """/msg reaches someone, so it spends the budget: the sixth in a window is refused."""
    server = await make_server(monotonic=FakeClock(1000.0))
    alice = await (await ChatClient.connect(server.ports["plain"])).login("alice")
    bob = await (await ChatClient.connect(server.ports["plain"])).login("bob")
    for i in range(5):
        await alice.send(f"/msg bob dm{i}")
        await bob.expect(f"alice → bob: dm{i}")
    await alice.send("/msg bob dm5")
    await alice.expect("Rate limited! Wait 10 seconds.")
    await bob.send("/users")
    assert "dm5" not in await bob.expect("bob (you)")
    await alice.close()
    await bob.close()


async def test_idle_lobbies_are_pruned_by_the_server_itself(make_server):
    """Nobody calls prune_lobbies by hand: the server's own chore removes an idle lobby."""
    clock = FakeClock()
    server = await make_server(clock=clock, lobby_idle_minutes=0.01)  # checked every second
    alice = await (await ChatClient.connect(server.ports["plain"])).login("alice")
    await alice.send("/create attic")
    await alice.expect("You are now in #attic")
    await alice.send("/join general")
    await alice.expect("You are now in #general")
    clock.advance(60)
    await wait_until(lambda: "attic" not in server.core.lobbies, what="#attic pruned")
    await alice.close()


async def test_ascii_escape_sequences_are_stripped_whole(connect):
    """An all-ASCII line with CSI and OSC sequences reaches others without their litter."""
    alice = await connect("alice")
    bob = await connect("bob")
    await alice.send(b"x\x1b[2Jy\x1b]0;pwned\x07z\x1b[31mred")
    text = await bob.expect("╰─> xyzred\r\n")
    for bad in ("\x1b", "[2J", "pwned", "[31m"):
        assert bad not in text.split("alice [")[-1]
