"""The chat core without sockets: clients write into lists, time is a fake clock."""

from __future__ import annotations

import dataclasses

import pytest

from gochat.changes import InLobby, LobbyDeleted, LobbySaved, LobbyTouched, ToUsers
from gochat.chat import ChatCore
from gochat.clients import Client
from gochat.delivery import LARGE_LOBBY, WINDOW
from gochat.errors import UserError
from gochat.events import ChatMessage, DirectMessage
from gochat.fanout import deliver
from gochat.ratelimit import MessageLimiter
from gochat.render import PLAIN_TEXT, text_mode

from .conftest import FakeClock, test_config


class Inbox:
    """Collects what a client was sent, as raw chunks and as text."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes, lobby: str | None = None) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()

    def clear(self) -> None:
        self.chunks.clear()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def core(clock: FakeClock) -> ChatCore:
    return ChatCore(test_config(), clock)


def join(core: ChatCore, name: str, colour: bool = False) -> tuple[Client, Inbox]:
    inbox = Inbox()
    client = Client(
        name, inbox.write, limiter=MessageLimiter.create(5, 10, 30), mode=text_mode(colour)
    )
    assert core.login(client)
    return client, inbox


def test_login_lands_in_general_and_is_announced(core):
    """A new user is welcomed in general and the others there are told."""
    alice, alice_in = join(core, "alice")
    bob, _ = join(core, "bob")
    assert core.current(alice) is core.current(bob) is core.lobbies.general
    assert "Welcome, alice!" in alice_in.text
    assert "bob joined the chat" in alice_in.text


def test_names_are_unique_case_insensitively(core):
    """'Alice' cannot log in while 'alice' is connected."""
    join(core, "alice")
    twin = Client("Alice", Inbox().write, limiter=MessageLimiter.create(5, 10, 30), mode=PLAIN_TEXT)
    assert not core.login(twin)


def test_message_reaches_lobby_only(core):
    """A line goes to everyone in the sender's lobby, sender included, and nowhere else."""
    alice, alice_in = join(core, "alice")
    _bob, bob_in = join(core, "bob")
    carol, carol_in = join(core, "carol")
    core.create_lobby(carol, "side", "elsewhere", None)
    for inbox in (alice_in, bob_in, carol_in):
        inbox.clear()
    core.say(alice, "hi there")
    assert "╰─> hi there" in alice_in.text
    assert "alice [22:13]\r\n  ╰─> hi there" in bob_in.text  # the FakeClock, in UTC
    assert "hi there" not in carol_in.text


def test_render_once_per_mode_shared_by_recipients(core):
    """Recipients in the same output mode receive the very same bytes object."""
    event = ChatMessage("general", "alice", "🙂", "hello", 0.0)
    inboxes = [Inbox() for _ in range(5)]
    clients = [
        Client(
            f"u{i}",
            box.write,
            limiter=MessageLimiter.create(5, 10, 30),
            mode=text_mode(i % 2 == 0),
        )
        for i, box in enumerate(inboxes)
    ]
    assert deliver(event, clients) == 5
    colour = [box.chunks[0] for i, box in enumerate(inboxes) if i % 2 == 0]
    plain = [box.chunks[0] for i, box in enumerate(inboxes) if i % 2 == 1]
    assert all(chunk is colour[0] for chunk in colour)
    assert all(chunk is plain[0] for chunk in plain)
    assert b"\x1b[" in colour[0] and b"\x1b" not in plain[0]


def test_history_replay_with_times_of_day(core, clock):
    """Joining replays the lobby's recent lines with the time each was said."""
    alice, _ = join(core, "alice")
    core.say(alice, "old news")
    clock.advance(180)
    core.say(alice, "fresh news")
    _, bob_in = join(core, "bob")
    text = bob_in.text
    assert "[22:13]\r\n  ╰─> old news" in text
    assert "[22:16]\r\n  ╰─> fresh news" in text
    assert text.index("old news") < text.index("fresh news")


def test_replay_window_and_cap(clock):
    """Only lines inside GOCHAT_REPLAY_MINUTES are replayed, at most GOCHAT_REPLAY_MAX."""
    core = ChatCore(test_config(replay_minutes=10, replay_max=3), clock)
    alice, _ = join(core, "alice")
    core.say(alice, "ancient")
    clock.advance(11 * 60)
    for i in range(5):
        core.say(alice, f"recent-{i}")
    _, bob_in = join(core, "bob")
    assert "ancient" not in bob_in.text
    assert "recent-1" not in bob_in.text
    assert all(f"recent-{i}" in bob_in.text for i in (2, 3, 4))


def test_replay_window_applies_below_the_cap(clock):
    """A line older than GOCHAT_REPLAY_MINUTES is not replayed, however roomy the cap."""
    core = ChatCore(test_config(replay_minutes=10, replay_max=50), clock)
    alice, _ = join(core, "alice")
    core.say(alice, "ancient")
    clock.advance(10 * 60 + 1)
    core.say(alice, "recent")
    _, bob_in = join(core, "bob")
    assert "recent" in bob_in.text
    assert "ancient" not in bob_in.text


def test_move_announced_in_both_lobbies(core):
    """Switching lobbies tells the old lobby who left and the new one who arrived."""
    alice, _alice_in = join(core, "alice")
    _bob, bob_in = join(core, "bob")
    carol, carol_in = join(core, "carol")
    core.create_lobby(carol, "games", "board games", None)
    bob_in.clear()
    carol_in.clear()
    core.move(alice, core.lobbies.get("games"))
    assert "alice went to #games" in bob_in.text
    assert "alice joined from #general" in carol_in.text
    assert core.current(alice) is core.lobbies.get("GAMES")


def test_idle_empty_lobbies_are_removed_but_general_stays(core, clock):
    """An empty lobby idle for GOCHAT_LOBBY_IDLE_MINUTES goes; general and busy ones stay."""
    alice, _ = join(core, "alice")
    bob, _ = join(core, "bob")
    core.create_lobby(alice, "empty", "x", None)
    core.create_lobby(bob, "busy", "y", None)
    core.move(alice, core.lobbies.general)
    clock.advance(119 * 60)
    assert core.prune_lobbies() == []
    clock.advance(2 * 60)
    removed = core.prune_lobbies()
    assert [lobby.name for lobby in removed] == ["empty"]
    assert "general" in core.lobbies and "busy" in core.lobbies


def test_direct_message_shown_to_both_sides(core):
    """/msg reaches sender and recipient, and nobody else."""
    alice, alice_in = join(core, "alice")
    _, bob_in = join(core, "bob")
    _, carol_in = join(core, "carol")
    core.direct(alice, "BOB", "psst")
    for inbox in (alice_in, bob_in):
        assert "[DM] 🙂 alice → bob: psst" in inbox.text
    assert "psst" not in carol_in.text


def test_unknown_user(core):
    """DM or tag to a name nobody has: 'User not found.'."""
    alice, _ = join(core, "alice")
    with pytest.raises(UserError, match=r"User not found\."):
        core.direct(alice, "ghost", "hi")
    with pytest.raises(UserError, match=r"User not found\."):
        core.tag(alice, "ghost", "hi")


def test_tag_highlights_once_for_a_target_in_the_lobby(core):
    """A target in the lobby sees the highlighted line, and no duplicate bell line."""
    alice, _ = join(core, "alice", colour=True)
    _, bob_in = join(core, "bob")
    core.tag(alice, "bob", "look at this")
    assert "╰─> @bob look at this" in bob_in.text
    assert "tagged you" not in bob_in.text


def test_tag_heads_up_for_a_target_elsewhere(core):
    """A target in another lobby gets the private heads-up; the line goes to the lobby."""
    alice, alice_in = join(core, "alice")
    bob, bob_in = join(core, "bob")
    core.create_lobby(bob, "side", "elsewhere", None)
    bob_in.clear()
    core.tag(alice, "bob", "look at this")
    assert "╰─> @bob look at this" in alice_in.text
    assert "alice tagged you in #general: look at this" in bob_in.text
    assert "╰─>" not in bob_in.text


def test_tag_yourself_is_refused(core):
    """/tag with your own name pings nobody: it is refused and nothing is posted."""
    alice, _ = join(core, "alice")
    _, bob_in = join(core, "bob")
    bob_in.clear()
    with pytest.raises(UserError, match="can't tag yourself"):
        core.tag(alice, "ALICE", "me me me")
    assert bob_in.text == ""


def test_tag_length_counts_the_text_not_the_prefix(clock):
    """A tag of exactly GOCHAT_MAX_MESSAGE characters is accepted; one more is refused."""
    core = ChatCore(test_config(max_message=10), clock)
    alice, _ = join(core, "alice")
    _, bob_in = join(core, "bob")
    core.tag(alice, "bob", "x" * 10)
    assert "@bob " + "x" * 10 in bob_in.text
    with pytest.raises(UserError, match="11 characters; the limit is 10"):
        core.tag(alice, "bob", "x" * 11)


def test_duplicate_lobby_named_as_it_exists(core):
    """/create Dev when #dev exists names #dev, the lobby's own spelling."""
    alice, _ = join(core, "alice")
    core.create_lobby(alice, "dev", "d", None)
    with pytest.raises(UserError, match=r"Lobby #dev already exists\. Use /join dev\."):
        core.create_lobby(alice, "Dev", "x", None)


def test_create_says_public_or_private(core):
    """The creator is told which kind of lobby they made."""
    alice, alice_in = join(core, "alice")
    core.create_lobby(alice, "open", "d", None)
    assert "Lobby #open created (public)." in alice_in.text
    core.create_lobby(alice, "shut", "d", b"$2b$04$hash")
    assert "Lobby #shut created (private: /join shut <password>)." in alice_in.text


def test_replay_shows_the_date_of_an_earlier_day(clock):
    """Lines from before today carry their date; today's only the time."""
    core = ChatCore(test_config(replay_minutes=3000), clock)
    carol, _ = join(core, "carol")
    core.say(carol, "old")
    clock.advance(86400)
    core.say(carol, "new")
    _, dave_in = join(core, "dave")
    assert "carol [2023-11-14 22:13]\r\n  ╰─> old" in dave_in.text
    assert "carol [22:13]\r\n  ╰─> new" in dave_in.text


def test_times_shown_in_the_configured_timezone(clock):
    """GOCHAT_TIMEZONE=Asia/Kolkata (UTC+5:30) shows 22:13 UTC as 03:43."""
    core = ChatCore(test_config(timezone="Asia/Kolkata"), clock)
    try:
        alice, _ = join(core, "alice")
        _, bob_in = join(core, "bob")
        core.say(alice, "namaste")
        assert "alice [03:43]\r\n  ╰─> namaste" in bob_in.text
    finally:
        ChatCore(test_config(), clock)  # the zone is process-wide: back to UTC


def test_message_length_limit(clock):
    """A message over GOCHAT_MAX_MESSAGE characters is refused with the limit."""
    core = ChatCore(test_config(max_message=10), clock)
    alice, _ = join(core, "alice")
    with pytest.raises(UserError, match="the limit is 10"):
        core.say(alice, "x" * 11)
    core.say(alice, "x" * 10)


def test_logout_announced_and_idempotent(core):
    """Leaving tells the lobby once, however many times the session reports it."""
    alice, _ = join(core, "alice")
    _, bob_in = join(core, "bob")
    core.logout(alice, "quit")
    core.logout(alice, "quit")
    assert bob_in.text.count("alice left the chat") == 1
    assert "alice" not in core.clients


# --- mutation-testing follow-ups (scripts/mutation) ---------------------------------


class RecordingJournal:
    """A sink of the core's changes: a log of what the store would be asked to keep."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def take(self, change, audience=None) -> None:
        if isinstance(change, ChatMessage):
            self.calls.append(("message", change))
        elif isinstance(change, DirectMessage):
            self.calls.append(("direct", change))
        elif isinstance(change, LobbySaved):
            lobby = change.lobby
            self.calls.append(("saved", lobby.name))
            self.calls.append(("saved at", (lobby.name, lobby.created_at, lobby.last_active)))
        elif isinstance(change, LobbyTouched):
            self.calls.append(("touched", (change.lobby.name, change.lobby.last_active)))
        elif isinstance(change, LobbyDeleted):
            self.calls.append(("deleted", change.name))

    def kinds(self, kind: str) -> list:
        return [args for k, args in self.calls if k == kind]


def test_refusals_say_why_in_full(core):
    """The lines users get for a refused DM, tag, move or unknown name, word for word."""
    alice, _ = join(core, "alice")
    with pytest.raises(UserError) as refused:
        core.direct(alice, "Alice", "hi me")
    assert str(refused.value) == "You can't send a DM to yourself."
    with pytest.raises(UserError) as refused:
        core.tag(alice, "alice", "hi me")
    assert str(refused.value) == "You can't tag yourself."
    with pytest.raises(UserError) as refused:
        core.direct(alice, "ghost", "hi")
    assert str(refused.value) == "User not found."
    with pytest.raises(UserError) as refused:
        core.move(alice, core.lobbies.general)
    assert str(refused.value) == "You are already in #general."


def test_create_lobby_checks_the_name_itself(core):
    """The core refuses a bad lobby name whoever calls it, in the /create wording."""
    alice, _ = join(core, "alice")
    for bad in ("x", "two words", "a" * 21):
        with pytest.raises(UserError) as refused:
            core.create_lobby(alice, bad, "d", None)
        assert str(refused.value) == "Lobby name must be 2-20 characters: letters, digits, _ or -."
    assert len(core.lobbies) == 1


def test_at_most_500_lobbies(core):
    from gochat.chat import MAX_LOBBIES

    alice, _ = join(core, "alice")
    for i in range(MAX_LOBBIES - 1):
        core.create_lobby(alice, f"room{i}", "d", None)
    with pytest.raises(UserError, match=r"^The server holds at most 500 lobbies; join one"):
        core.create_lobby(alice, "onemore", "d", None)
    assert len(core.lobbies) == MAX_LOBBIES


def test_a_user_without_a_lobby_just_joins(core):
    """Moving someone who is in no lobby announces a plain 'joined' (no 'from')."""
    _, bob_in = join(core, "bob")
    drifter = Client(
        "drifter", Inbox().write, limiter=MessageLimiter.create(5, 10, 30), mode=PLAIN_TEXT
    )
    core.move(drifter, core.lobbies.general)
    assert "drifter joined\r\n" in bob_in.text
    assert core.current(drifter) is core.lobbies.general


def test_the_store_is_told_of_every_change(core, clock):
    """With a store, lobbies, messages and DMs are journaled as they happen."""
    journal = RecordingJournal()
    core.sinks.append(journal)
    alice, _ = join(core, "alice")
    join(core, "bob")
    lobby = core.create_lobby(alice, "music", "d", None)
    assert journal.kinds("saved") == ["music"]
    core.lobby_changed(lobby)
    assert journal.kinds("saved") == ["music", "music"]
    said = core.say(alice, "hello")
    assert journal.kinds("message") == [said]
    assert (said.lobby, said.sender, said.text, said.timestamp, said.kind) == (
        "music",
        "alice",
        "hello",
        clock.now,
        "chat",
    )
    clock.advance(5)
    core.direct(alice, "bob", "psst")
    (dm,) = journal.kinds("direct")
    assert (dm.sender, dm.recipient, dm.text, dm.timestamp) == ("alice", "bob", "psst", clock.now)
    core.move(alice, core.lobbies.general)
    clock.advance(10 * 24 * 3600)
    assert core.prune_lobbies() == [lobby]
    assert journal.kinds("deleted") == ["music"]


def test_record_keeps_a_message_in_history_and_the_store(core, clock):
    """What Rox says is recorded like a user's line: replayed, stored, and keeps the lobby alive."""
    journal = RecordingJournal()
    core.sinks.append(journal)
    lobby = core.lobbies.general
    message = ChatMessage("general", "Rox", "🤖", "an answer", clock.now + 30, "ai", "alice")
    recorded = core.record(lobby, message)
    assert recorded == dataclasses.replace(message, id=recorded.id) and recorded.id is not None
    assert lobby.history[-1] is recorded
    assert lobby.last_active == clock.now + 30
    assert journal.kinds("message") == [recorded]


def test_a_tag_is_stored_as_a_tag(core):
    """The history (and the store) keep whom a line tagged, so replays highlight it again."""
    alice, _ = join(core, "alice")
    join(core, "bob")
    core.tag(alice, "BOB", "look")
    message = core.lobbies.general.history[-1]
    assert (message.kind, message.tagged, message.text) == ("tag", "bob", "@bob look")
    core.say(alice, "plain")
    message = core.lobbies.general.history[-1]
    assert (message.kind, message.tagged) == ("chat", None)


def test_message_text_is_logged_only_at_debug(core, caplog):
    """Lifecycle lines are logged at INFO; what people say only at DEBUG."""
    caplog.set_level("INFO", logger="gochat.chat")
    alice, _ = join(core, "alice")
    join(core, "bob")
    core.say(alice, "secret plans")
    core.direct(alice, "bob", "secret psst")
    assert "secret" not in caplog.text
    caplog.set_level("DEBUG", logger="gochat.chat")
    core.say(alice, "said aloud")
    core.direct(alice, "bob", "said quietly")
    assert "#general <alice> said aloud" in caplog.messages
    assert "DM <alice> -> <bob> said quietly" in caplog.messages


def test_lobby_lifecycle_is_logged(core, clock, caplog):
    caplog.set_level("INFO", logger="gochat.chat")
    alice, _ = join(core, "alice")
    core.create_lobby(alice, "music", "d", None)
    core.create_lobby(alice, "vault", "d", b"$2b$04$hash")
    core.move(alice, core.lobbies.general)
    clock.advance(10 * 24 * 3600)
    core.prune_lobbies()
    core.logout(alice, "quit")
    assert caplog.messages == [
        "lobby music created by alice (public)",
        "lobby vault created by alice (private)",
        "lobby music removed after inactivity",
        "lobby vault removed after inactivity",
    ]  # logins and logouts are DEBUG: at INFO they are counted once a minute (gochat.activity)


def test_a_lobby_goes_once_idle_exactly_the_configured_time(core, clock):
    """GOCHAT_LOBBY_IDLE_MINUTES=120: an empty lobby is removed at 120 minutes, not later."""
    alice, _ = join(core, "alice")
    core.create_lobby(alice, "brief", "x", None)
    core.move(alice, core.lobbies.general)
    clock.advance(120 * 60 - 1)
    assert core.prune_lobbies() == []
    clock.advance(1)
    assert [lobby.name for lobby in core.prune_lobbies()] == ["brief"]


def test_restore_puts_lobbies_back_and_general_keeps_its_access():
    """After a restart: stored lobbies come back as they were; general stays open and named."""
    from gochat.lobbies import LobbyManager

    lobbies = LobbyManager(now=100.0, history_size=10)
    old = [ChatMessage("Music", "alice", "🙂", f"m{i}", 50.0 + i) for i in range(3)]
    music = lobbies.restore(
        "Music",
        creator="alice",
        description="jazz",
        password_hash=b"$2b$04$hash",
        persona="a pirate",
        created_at=10.0,
        last_active=52.0,
        history=old,
    )
    assert lobbies.get("music") is music
    assert (music.name, music.creator, music.description) == ("Music", "alice", "jazz")
    assert music.private and music.password_hash == b"$2b$04$hash"
    assert (music.persona, music.created_at, music.last_active) == ("a pirate", 10.0, 52.0)
    assert list(music.history) == old
    general = lobbies.restore(
        "GENERAL",
        creator="mallory",
        description="taken over",
        password_hash=b"$2b$04$hash",
        persona="quiet",
        created_at=1.0,
        last_active=2.0,
        history=[],
    )
    assert general is lobbies.general and len(lobbies) == 2
    assert (general.name, general.creator, general.private) == ("general", "server", False)
    assert (general.persona, general.created_at, general.last_active) == ("quiet", 1.0, 2.0)


def test_the_store_learns_when_a_lobby_was_last_used(core, clock):
    """Arrivals, departures and messages move a lobby's last use, and the store is told."""
    journal = RecordingJournal()
    core.sinks.append(journal)
    alice, _ = join(core, "alice")
    start = clock.now
    lobby = core.create_lobby(alice, "music", "d", None)
    assert journal.kinds("saved at") == [("music", start, start)]
    assert ("music", start) in journal.kinds("touched")  # alice arrived
    clock.advance(60)
    core.say(alice, "hello")
    core.lobby_changed(lobby)
    assert journal.kinds("saved at")[-1] == ("music", start, start + 60)
    clock.advance(60)
    core.move(alice, core.lobbies.general)
    assert journal.kinds("touched")[-2:] == [("music", start + 120), ("general", start + 120)]
    core.create_lobby(alice, "jazz", "d", None)
    assert journal.kinds("touched")[-1] == ("jazz", start + 120)
    assert lobby.last_active == start + 120


def test_counters_for_metrics(core):
    """Logins, messages and deliveries (one per recipient) are counted for /metrics."""
    alice, _ = join(core, "alice")
    join(core, "bob")
    join(core, "carol")
    assert core.counters.logins == 3
    core.say(alice, "one")
    core.say(alice, "two")
    assert (core.counters.messages, core.counters.deliveries) == (2, 6)


def test_presence_lines_show_arrow_picture_and_action(core):
    """Arrivals read '→ picture name action', departures '← picture name action'."""
    alice, _ = join(core, "alice")
    _, bob_in = join(core, "bob")
    core.set_picture(alice, "🐱")
    core.create_lobby(alice, "music", "d", None)
    core.move(alice, core.lobbies.general)
    assert "← 🐱 alice went to #music\r\n" in bob_in.text
    assert "→ 🐱 alice joined from #music\r\n" in bob_in.text
    core.say(alice, "meow")
    assert "🐱 alice [" in bob_in.text


def test_success_lines_are_marked_as_such(core):
    """The welcome and 'created' lines are success notices (✔), other notices are not."""
    alice, alice_in = join(core, "alice")
    assert alice_in.text.startswith("✔ Welcome, alice! You are in #general.")
    alice_in.clear()
    core.create_lobby(alice, "vault", "d", b"$2b$04$hash")
    assert alice_in.text.startswith(
        "✔ Lobby #vault created (private: /join vault <password>). "
        "For a public one with a description: /create NAME - DESCRIPTION\r\n"
    )
    assert "\r\nℹ You are now in #vault: d\r\n" in alice_in.text  # an ordinary notice


def test_a_new_lobby_remembers_its_creator_and_birth(core, clock):
    alice, _ = join(core, "alice")
    clock.advance(42)
    lobby = core.create_lobby(alice, "music", "jazz", None)
    assert (lobby.creator, lobby.description, lobby.created_at) == ("alice", "jazz", clock.now)


def test_after_logout_nothing_is_said_for_the_user(core):
    """A line that arrives after its user logged out is refused, not posted anywhere."""
    alice, _ = join(core, "alice")
    _, bob_in = join(core, "bob")
    core.logout(alice, "quit")
    bob_in.clear()
    with pytest.raises(UserError) as refused:
        core.say(alice, "too late")
    assert str(refused.value) == "You are not in a lobby."
    with pytest.raises(UserError, match=r"^You are not in a lobby\.$"):
        core.tag(alice, "bob", "too late")
    assert bob_in.text == ""


def test_at_shutdown_users_leave_silently(core):
    """Closing: each logout empties the lobby without a 'left' line to the rest."""
    alice, _ = join(core, "alice")
    _, bob_in = join(core, "bob")
    bob_in.clear()
    core.closing = True
    core.logout(alice, "shutdown")
    assert "alice" not in core.lobbies.general.members
    assert core.current(alice) is None and alice.lobby_keys == ()
    assert bob_in.text == ""


def test_replay_window_boundary(clock):
    """GOCHAT_REPLAY_MINUTES=10: a line exactly 10 minutes old is replayed, older is not."""
    core = ChatCore(test_config(replay_minutes=10), clock)
    alice, _ = join(core, "alice")
    core.say(alice, "edge")
    clock.advance(600)
    _, bob_in = join(core, "bob")
    assert "edge" in bob_in.text
    clock.advance(1)
    _, carol_in = join(core, "carol")
    assert "edge" not in carol_in.text


def test_history_is_a_ring_of_200(core):
    """A lobby keeps its last 200 lines (HISTORY_RING): memory stays bounded, however busy."""
    alice, _ = join(core, "alice")
    lobby = core.create_lobby(alice, "busy", "d", None)
    for i in range(250):
        core.say(alice, f"line {i}")
    assert len(lobby.history) == 200
    assert lobby.history[0].text == "line 50"


def test_replay_max_of_one(clock):
    """GOCHAT_REPLAY_MAX=1 replays exactly the last line."""
    core = ChatCore(test_config(replay_max=1), clock)
    alice, _ = join(core, "alice")
    core.say(alice, "first")
    core.say(alice, "second")
    _, bob_in = join(core, "bob")
    assert "second" in bob_in.text and "first" not in bob_in.text


def test_general_is_described_and_new_lobbies_have_no_persona(core, clock):
    """general greets with its description; a new lobby uses Rox's default persona (None)."""
    alice, alice_in = join(core, "alice")
    lobby = core.create_lobby(alice, "music", "d", None)
    assert lobby.persona is None and core.lobbies.general.persona is None
    alice_in.clear()
    core.move(alice, core.lobbies.general)
    assert "You are now in #general: Where everyone starts\r\n" in alice_in.text
    assert core.lobbies.general.creator == "server"
    assert core.lobbies.general.created_at == clock.now


def test_shutdown_marks_occupied_lobbies_as_just_used(core, clock):
    """At shutdown, lobbies people are in count as used now, so a restart does not prune them."""
    journal = RecordingJournal()
    core.sinks.append(journal)
    alice, _ = join(core, "alice")
    bob, _ = join(core, "bob")
    music = core.create_lobby(alice, "music", "d", None)
    empty = core.create_lobby(bob, "empty", "d", None)
    core.move(bob, core.lobbies.general)
    before = empty.last_active
    clock.advance(3600)
    journal.calls.clear()
    core.touch_occupied()
    assert music.last_active == core.lobbies.general.last_active == clock.now
    assert empty.last_active == before
    assert sorted(journal.kinds("touched")) == [("general", clock.now), ("music", clock.now)]


# --- several lobbies at once, ids, and the sinks ---------------------------------------


def test_a_user_can_be_in_several_lobbies(core):
    """join adds a lobby (it becomes current), part leaves one; each lobby hears only
    its own news, and a logout is announced in every lobby the user was in."""
    alice, _ = join(core, "alice")
    bob, bob_in = join(core, "bob")
    dev = core.create_lobby(bob, "dev", "d", None)  # bob moves to dev
    _carol, carol_in = join(core, "carol")  # stays in general
    carol_in.clear()
    core.join(alice, dev)
    assert core.lobbies_of(alice) == [core.lobbies.general, dev]
    assert core.current(alice) is dev
    assert "alice joined\r\n" in bob_in.text and carol_in.text == ""
    with pytest.raises(UserError, match="already in #dev"):
        core.join(alice, dev)
    bob_in.clear()
    core.say(alice, "to dev")
    assert "to dev" in bob_in.text and "to dev" not in carol_in.text
    core.part(alice, dev)
    assert core.current(alice) is core.lobbies.general and "alice" not in dev.members
    assert "alice left\r\n" in bob_in.text and carol_in.text == ""
    with pytest.raises(UserError, match="not in #dev"):
        core.part(alice, dev)
    core.join(alice, dev)
    bob_in.clear()
    carol_in.clear()
    core.logout(alice, "quit")
    assert "alice left the chat" in bob_in.text and "alice left the chat" in carol_in.text
    assert not core.lobbies.general.members.get("alice") and not dev.members.get("alice")


def test_move_keeps_one_lobby(core):
    """The text and JSON front ends' /join: leave the current lobby, enter the new one."""
    alice, _ = join(core, "alice")
    bob, _ = join(core, "bob")
    dev = core.create_lobby(bob, "dev", "d", None)
    core.move(alice, dev)
    assert core.lobbies_of(alice) == [dev]


def test_message_ids_grow_and_follow_time(core, clock):
    """Ids increase with every message, even two in the same microsecond, and follow the
    clock, so those given after a restart continue the restored ones."""
    alice, _ = join(core, "alice")
    first = core.say(alice, "one")
    second = core.say(alice, "two")  # the fake clock has not moved
    assert first.id == int(clock.now * 1_000_000) and second.id == first.id + 1
    clock.now += 1
    assert core.say(alice, "three").id == int(clock.now * 1_000_000)


def test_restored_history_gets_ids_in_time_order(clock):
    """History read from the store has no ids; restore_ids gives them oldest first,
    across lobbies, and later messages get larger ones."""
    core = ChatCore(test_config(), clock)
    old = [ChatMessage("general", "al", "🙂", f"m{i}", clock.now - 10 + i) for i in range(3)]
    core.lobbies.general.history.extend(old)
    core.restore_ids()
    ids = [m.id for m in core.lobbies.general.history]
    assert ids == sorted(ids) and len(set(ids)) == 3 and ids[0] == int(old[0].timestamp * 1e6)
    alice, _ = join(core, "alice")
    assert core.say(alice, "new").id > ids[-1]


def test_every_sink_hears_the_same_stream_with_audiences(core):
    """Local delivery is a sink like any other: a recording sink sees each event with
    whom it is for (a lobby, users by key), and lobby changes for nobody."""
    seen = []

    class Recorder:
        def take(self, item, audience):
            seen.append((type(item).__name__, audience))

    core.sinks.append(Recorder())
    alice, _ = join(core, "alice")
    _bob, bob_in = join(core, "bob")
    seen.clear()
    core.direct(alice, "bob", "psst")
    core.say(alice, "hi")
    assert [name for name, _ in seen] == ["DirectMessage", "ChatMessage"]
    assert seen[0][1] == ToUsers(("alice", "bob")) and seen[1][1] == InLobby("general")
    assert "psst" in bob_in.text
    seen.clear()
    core.create_lobby(alice, "dev", "d", None)
    assert ("LobbySaved", None) in seen


# --- presence coalesced (gochat.delivery) -------------------------------------------------


class Turns:
    """A stand-in for loop.call_later: callbacks wait until the test ends the turn."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, object]] = []

    def __call__(self, delay: float, callback) -> None:
        self.calls.append((delay, callback))

    def end(self) -> list[float]:
        calls, self.calls = self.calls, []
        for _, callback in calls:
            callback()
        return [delay for delay, _ in calls]


def test_a_few_departures_in_one_turn_are_told_one_by_one(core):
    turns = core.delivery.later = Turns()
    _watcher, seen = join(core, "watcher")
    leavers = [join(core, f"u{i}")[0] for i in range(3)]
    turns.end()
    seen.clear()
    for client in leavers:
        core.logout(client, "quit")
    assert seen.text == ""  # nothing until the turn ends
    assert turns.end() == [0.0]
    assert seen.text.count("left the chat") == 3


def test_many_departures_in_one_turn_are_one_line(core):
    """Past GOCHAT_PRESENCE_BATCH (5) at once: one line, with the count and a few names."""
    turns = core.delivery.later = Turns()
    _watcher, seen = join(core, "watcher")
    leavers = [join(core, f"u{i}")[0] for i in range(40)]
    turns.end()
    seen.clear()
    for client in leavers:
        core.logout(client, "quit")
    turns.end()
    assert seen.text == "← 40 people left #general: u0, u1, u2, u3, u4 and 35 more\r\n"


def test_a_message_sends_the_waiting_presence_first(core):
    """Nobody reads a line from someone before the line saying they arrived."""
    turns = core.delivery.later = Turns()
    _watcher, seen = join(core, "watcher")
    turns.end()
    seen.clear()
    newcomer, _ = join(core, "newcomer")
    core.say(newcomer, "hi all")
    text = seen.text
    assert text.index("newcomer joined the chat") < text.index("hi all")
    turns.end()  # the waiting presence went with the message: nothing twice
    assert seen.text.count("newcomer joined") == 1


def test_in_a_large_lobby_presence_waits_up_to_a_second(core):
    """Past LARGE_LOBBY members, arrivals are gathered for WINDOW seconds: a login storm
    costs the lobby one line a second, not one line per login to everyone."""
    turns = core.delivery.later = Turns()
    for i in range(LARGE_LOBBY + 1):
        join(core, f"m{i}")
    turns.end()
    join(core, "late0")
    assert turns.end() == [WINDOW]
