"""Rox, the Gemini assistant: the real google-genai client against a fake Gemini server.

Every test runs a real chat server on port 0 with real sockets; the SDK talks
HTTP to tests/fake_gemini.py through GOCHAT_AI_BASE_URL (ai_base_url), so
what is asserted about a request is what the SDK really sent.
"""

from __future__ import annotations

import io
import logging
import re

import pytest

from gochat import rox
from gochat import rox_failures as failures
from gochat.cli import build_parser
from gochat.config import Config
from gochat.events import AIAnswer
from gochat.logs import setup_logging
from gochat.markdown import WIDTH, cell_width, plain_text, render_markdown
from gochat.render import render

from . import fake_gemini as fg
from .conftest import ChatClient, FakeClock, wait_until

KEY = "test-key-0123456789"


@pytest.fixture
def fake():
    server = fg.FakeGemini().start()
    yield server
    server.close()


@pytest.fixture
def rox_server(make_server, fake):
    """A chat server with Rox pointed at the fake; keyword args override settings."""

    async def start(**kw):
        settings = {"ai_api_key": KEY, "ai_base_url": fake.url, "ai_timeout": 5.0}
        settings.update(kw)
        return await make_server(**settings)

    return start


@pytest.fixture
async def users():
    """Open logged-in clients to a server; all are closed after the test."""
    opened: list[ChatClient] = []

    async def login(server, *names):
        clients = []
        for name in names:
            client = await ChatClient.connect(server.ports["plain"])
            opened.append(client)
            await client.login(name)
            clients.append(client)
        return clients[0] if len(clients) == 1 else clients

    yield login
    for client in opened:
        await client.close()


async def answered(client: ChatClient, asker: str, last_words: str) -> str:
    """Wait for Rox's answer to `asker` up to `last_words`; return the answer's text."""
    await client.expect(f"[AI Response to {asker}]\r\n")
    return await client.expect(last_words)


# -- availability and settings --------------------------------------------------------


async def test_no_key_means_no_ai(make_server, users, caplog):
    """Without a key the server says so at startup, and /ai and /setai say so to the user."""
    caplog.set_level(logging.INFO, logger="gochat")
    server = await make_server()
    assert "AI features disabled (no API key)" in caplog.text
    bob = await users(server, "bob")
    await bob.send("/ai what is the meaning of life?")
    await bob.expect("AI is not available on this server")
    await bob.send("/setai You are a cat.")
    await bob.expect("AI is not available on this server")


async def help_lines(client: ChatClient) -> list[str]:
    """The lines of /help, title first."""
    await client.send("/help")
    text = await client.expect("Any other line")
    text += await client.expect("\r\n")
    return text[text.index("Commands") :].split("\r\n")[:-1]


async def test_no_key_hides_ai_from_help_and_lobbies(make_server, users):
    """Without a key /help lists neither /ai nor /setai and /lobbies has no AI column;
    both commands still answer that AI is not available."""
    server = await make_server()
    bob = await users(server, "bob")
    lines = await help_lines(bob)
    assert any(line.startswith("  /history") for line in lines)
    assert not any("/ai" in line or "/setai" in line or "Rox" in line for line in lines)
    assert all(cell_width(line) <= 80 for line in lines), lines
    await bob.send("/lobbies")
    listing = await bob.expect("by server")
    listing += await bob.expect("\r\n")
    assert "#general" in listing and "AI" not in listing
    await bob.send("/setai reset")
    await bob.expect(rox.NOT_AVAILABLE)


async def test_help_lists_ai_commands_when_ai_is_on(rox_server, users):
    """With a key /help lists /ai and /setai, and every line fits 80 columns."""
    server = await rox_server()
    bob = await users(server, "bob")
    lines = await help_lines(bob)
    assert any(line.startswith("  /ai <question>  ") for line in lines)
    assert any(line.startswith("  /setai <prompt>|reset  ") for line in lines)
    assert all(cell_width(line) <= 80 for line in lines), lines


async def test_key_enables_ai_and_is_never_shown(rox_server, caplog):
    """With a key startup logs 'AI features enabled'; the key is in no repr and no log line."""
    caplog.set_level(logging.DEBUG, logger="gochat")
    server = await rox_server()
    assert "AI features enabled" in caplog.text
    assert KEY not in repr(server.config)
    assert KEY not in caplog.text


def test_api_key_setting():
    """GEMINI_API_KEY or GOOGLE_API_KEY; never a flag; hidden from repr."""
    assert Config.from_env({"GEMINI_API_KEY": "k1"}).ai_api_key == "k1"
    assert Config.from_env({"GOOGLE_API_KEY": "k2"}).ai_api_key == "k2"
    both = Config.from_env({"GEMINI_API_KEY": "k1", "GOOGLE_API_KEY": "k2"})
    assert both.ai_api_key == "k1"
    assert "k1" not in repr(both)
    assert Config.from_env({}).ai_api_key == ""
    dests = {action.dest for action in build_parser()._actions}
    assert "ai_api_key" not in dests


THIRD_PARTY = ("google_genai", "httpx", "httpcore", "httpx2", "httpcore2")
"""google-genai logs under google_genai.*; it uses httpx, or since 2.x its fork httpx2."""


@pytest.fixture
def logging_restored(monkeypatch):
    """Undo setup_logging after the test: root handlers and level, third-party levels."""
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in THIRD_PARTY}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


def test_third_party_loggers_are_quiet_unless_debug(logging_restored):
    """The SDK's and httpx's INFO lines are dropped at INFO; DEBUG shows them; ERROR stays ERROR."""
    stream = io.StringIO()
    setup_logging("INFO", stream=stream)
    assert {logging.getLogger(n).getEffectiveLevel() for n in THIRD_PARTY} == {logging.WARNING}
    afc = logging.getLogger("google_genai.models")
    afc.info("AFC is enabled with max remote calls: 10.")  # as on every call
    afc.warning("a real problem")
    assert "AFC" not in stream.getvalue() and "a real problem" in stream.getvalue()

    setup_logging("DEBUG", stream=stream)
    assert {logging.getLogger(n).getEffectiveLevel() for n in THIRD_PARTY} == {logging.DEBUG}
    setup_logging("ERROR", stream=stream)
    assert {logging.getLogger(n).getEffectiveLevel() for n in THIRD_PARTY} == {logging.ERROR}


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_an_ai_call_logs_no_third_party_lines_at_info(
    rox_server, users, logging_restored, level
):
    """At INFO an /ai logs gochat's own lines only; at DEBUG httpx's request line appears."""
    stream = io.StringIO()
    setup_logging(level, stream=stream)
    server = await rox_server()
    bob = await users(server, "bob")
    await bob.send("/ai anyone there?")
    await answered(bob, "bob", "• two")
    await wait_until(lambda: "AI answer for bob" in stream.getvalue(), what="the answer's log line")
    text = stream.getvalue()
    loggers = set(re.findall(r"^\S+ [A-Z]+ +([\w.]+): ", text, re.MULTILINE))
    if level == "INFO":
        assert {name.split(".")[0] for name in loggers} == {"gochat"}, text
        assert "HTTP Request" not in text and "AFC is enabled" not in text
    else:  # the lines exist, so the INFO case proves something
        assert re.search(r"INFO +httpx2?: HTTP Request: POST", text)


# -- the happy path ---------------------------------------------------------------------


async def test_question_and_answer_reach_the_lobby(rox_server, fake, users):
    """Asker sees Thinking, the lobby sees the question and the answer; the request is right."""
    server = await rox_server(ai_context_lines=2)
    alice, bob = await users(server, "alice", "bob")
    for line in ("too old to matter", "pizza tonight?", "only if it has pineapple"):
        await alice.send(line)
        await bob.expect(line)
    await bob.send("/ai is pineapple on pizza ok?")
    await bob.expect("bob asked AI: is pineapple on pizza ok?")
    await bob.expect("[AI] Thinking...")
    await alice.expect("bob asked AI: is pineapple on pizza ok?")
    for client in (alice, bob):
        text = await answered(client, "bob", "• two")
        assert "  Sure. Here's the deal:\r\n  • one\r\n  • two" in text
        assert "**" not in text

    assert len(fake.requests) == 1
    request = fake.requests[0]
    assert request.version in ("v1", "v1beta")
    assert request.model == server.config.ai_model
    assert request.api_key == KEY
    assert rox.DEFAULT_PERSONA in request.system
    assert "#general" in request.system
    (role, prompt), *_ = request.turns[-1:]
    assert role == "user"
    assert "alice: pizza tonight?" in prompt
    assert "alice: only if it has pineapple" in prompt
    assert "too old to matter" not in prompt  # only the last ai_context_lines lines
    assert prompt.endswith("bob asks: is pineapple on pizza ok?")
    generation = request.body.get("generationConfig", {})
    assert generation.get("maxOutputTokens") == server.config.ai_max_output_tokens


async def test_answer_is_remembered_and_replayed(rox_server, fake, users):
    """The next question carries the previous exchange; a newcomer's replay shows Rox's answer."""
    server = await rox_server()
    bob = await users(server, "bob")
    fake.next(fg.OK, "Forty-two, obviously.")
    await bob.send("/ai meaning of life?")
    await answered(bob, "bob", "Forty-two, obviously.")
    await bob.send("/ai and of pizza?")
    await answered(bob, "bob", "• two")
    turns = fake.requests[1].turns
    assert turns[0] == ("user", "bob asks: meaning of life?")
    assert turns[1] == ("model", "Forty-two, obviously.")
    assert turns[2][0] == "user" and turns[2][1].endswith("bob asks: and of pizza?")

    carol = await users(server, "carol")
    replay = await carol.expect("Forty-two, obviously.")
    assert "Rox" in replay and "@bob asked: meaning of life?" in replay


async def test_two_lobbies_keep_their_conversations_apart(rox_server, fake, users):
    """A question in #den sees nothing of #general's talk or Rox's answers there, and back."""
    server = await rox_server()
    alice, bob = await users(server, "alice", "bob")
    await bob.send("/create den no-pass bob's den")
    await bob.expect("You are now in #den")
    await alice.send("alpha chatter")
    await alice.expect("alpha chatter")
    await bob.send("beta chatter")
    await bob.expect("beta chatter")

    fake.next(fg.OK, "Alpha answer.")
    await alice.send("/ai alpha question")
    await answered(alice, "alice", "Alpha answer.")
    fake.next(fg.OK, "Beta answer.")
    await bob.send("/ai beta question")
    await answered(bob, "bob", "Beta answer.")
    await alice.send("/ai alpha again")
    await answered(alice, "alice", "• two")

    first, den, again = fake.requests
    assert "beta chatter" in den.everything and "beta question" in den.everything
    assert "#den" in den.system
    for word in ("alpha", "Alpha"):
        assert word not in den.everything
    assert "alpha question" in again.everything and "Alpha answer." in again.everything
    assert "alpha chatter" in again.everything
    assert "beta" not in again.everything.lower()
    assert "#general" in again.system
    assert "alpha again" not in first.everything


async def test_conversation_is_bounded_and_forgotten_when_idle(make_server, fake, users):
    """Only the last ai_history_turns turns are sent; 30 idle minutes start a fresh one."""
    clock = FakeClock()
    server = await make_server(
        ai_api_key=KEY, ai_base_url=fake.url, ai_timeout=5.0, ai_history_turns=2, clock=clock
    )
    bob = await users(server, "bob")
    for n, word in enumerate(("first", "second", "third")):
        fake.next(fg.OK, f"answer-{word}")
        await bob.send(f"/ai question-{word}")
        await answered(bob, "bob", f"answer-{word}")
        assert len(fake.requests) == n + 1
    third = fake.requests[2].everything
    assert "question-second" in third and "answer-second" in third
    assert "question-first" not in third and "answer-first" not in third

    clock.advance(31 * 60)
    await bob.send("/ai question-fourth")
    await answered(bob, "bob", "• two")
    fourth = fake.requests[3]
    assert len(fourth.turns) == 1
    assert "question-third" not in fourth.everything


# -- personas ---------------------------------------------------------------------------


async def test_setai_by_the_creator_only_and_reset(rox_server, fake, users):
    """The creator sets the persona (lobby told), others can't, #general can't; reset works."""
    server = await rox_server()
    carol, dave = await users(server, "carol", "dave")
    await carol.send("/setai You are a cat.")
    await carol.expect("can't be changed")  # #general keeps Rox's own persona
    await carol.send("/create den no-pass carol's den")
    await carol.expect("You are now in #den")
    await dave.send("/join den")
    await dave.expect("You are now in #den")

    await carol.send("/setai You are a grumpy pirate who says arr.")
    for client in (carol, dave):
        await client.expect("carol gave Rox a new persona in #den: You are a grumpy pirate")
    await dave.send("/setai You are a kitten.")
    await dave.expect("Only carol, who created #den, can change Rox's persona here.")

    await dave.send("/lobbies")
    listing = await dave.expect("#den")
    listing += await dave.expect("\n")
    assert re.search(r"#general\s.*default AI", listing)
    assert re.search(r"#den\s.*custom AI", listing)

    await dave.send("/ai ahoy?")
    await answered(dave, "dave", "• two")
    assert "You are a grumpy pirate who says arr." in fake.requests[0].system
    assert rox.DEFAULT_PERSONA not in fake.requests[0].system

    await carol.send("/setai reset")
    for client in (carol, dave):
        await client.expect("carol reset Rox's persona in #den to the default.")
    await dave.send("/ai and now?")
    await answered(dave, "dave", "• two")
    assert rox.DEFAULT_PERSONA in fake.requests[1].system
    assert "pirate" not in fake.requests[1].everything  # a new persona starts a new talk


async def test_setai_reset_of_the_default_persona_is_quiet(rox_server, fake, users):
    """Resetting a default persona tells only the asker, and Rox keeps the conversation."""
    server = await rox_server()
    carol, dave = await users(server, "carol", "dave")
    await carol.send("/create den no-pass carol's den")
    await carol.expect("You are now in #den")
    await dave.send("/join den")
    await dave.expect("You are now in #den")
    fake.next(fg.OK, "Remember me.")
    await dave.send("/ai first question")
    await answered(dave, "dave", "Remember me.")
    await answered(carol, "dave", "Remember me.")

    await carol.send("/setai reset")
    await carol.expect("Rox already has the default persona in #den.")
    await carol.send("after the reset")
    told = await carol.expect("after the reset")
    heard = await dave.expect("after the reset")
    assert "reset" not in told.replace("after the reset", "")
    assert "reset" not in heard.replace("after the reset", "")
    assert server.core.lobbies.get("den").persona is None

    await dave.send("/ai second question")
    await answered(dave, "dave", "• two")
    assert "first question" in fake.requests[1].everything  # the talk was not wiped
    assert "Remember me." in fake.requests[1].everything


# -- failures: one clear line to the asker, one short line to the lobby, details to the log


@pytest.mark.parametrize(
    ("mode", "text", "line", "reason", "logged"),
    [
        (fg.RATE_LIMITED, None, failures.ANSWER_QUOTA, "over quota", "HTTP 429"),
        (fg.SERVER_ERROR, None, failures.ANSWER_SERVER, "AI service error", "HTTP 500"),
        (
            fg.MALFORMED,
            None,
            failures.ANSWER_UNREADABLE,
            "unreadable reply",
            "unreadable reply",
        ),
        (fg.EMPTY, None, failures.ANSWER_TOO_LONG, "ran out of room", "MAX_TOKENS"),
        (fg.NOT_FOUND, None, failures.ANSWER_MODEL, "misconfigured", "GOCHAT_AI_MODEL"),
        (fg.BAD_KEY, None, failures.ANSWER_KEY, "misconfigured", "API key was refused"),
        (fg.OK, "\x1b[2J\x1b]0;x\x07", failures.ANSWER_EMPTY, "empty answer", "empty answer"),
    ],
)
async def test_failures_give_the_asker_one_clear_line(
    rox_server, fake, users, caplog, mode, text, line, reason, logged
):
    """429, 500, malformed JSON, empty, retired model, bad key: one line, chat goes on.

    The lobby saw the question, so it gets one short line with a reason category
    (never the error's text); the asker gets only their own, more precise line."""
    caplog.set_level(logging.INFO, logger="gochat")
    server = await rox_server()
    alice, bob = await users(server, "alice", "bob")
    fake.next(mode, text)
    await bob.send("/ai will this work?")
    await bob.expect("[AI] Thinking...")
    seen = await bob.expect(line)
    assert seen.strip().count("\n") == 0  # after Thinking: exactly one line, the error
    await bob.send("still here")
    after = await bob.expect("still here")
    assert "[AI" not in after
    heard = await alice.expect("still here")
    assert line not in heard and "[AI Response" not in heard
    assert f"\n⚠ Rox could not answer bob's question ({reason}).\r\n" in heard
    assert heard.count("could not answer") == 1
    assert "could not answer" not in seen + after
    assert logged in caplog.text
    assert KEY not in caplog.text
    for leak in ("Quota exceeded", "Internal error", "not valid", "Expecting", "Traceback"):
        assert leak not in seen + after
    assert failures.ANSWER_BUG not in seen
    assert sum(server.assistant.outcomes.values()) == 1
    assert server.assistant.outcomes[failures.OUTCOMES[line]] == 1


async def test_out_of_tokens_blames_the_answer_not_the_question(rox_server, fake, users, caplog):
    """MAX_TOKENS after a short question: the line asks for a shorter answer, not question;
    the log names the cap and how much of it thinking used (thinking counts against it)."""
    caplog.set_level(logging.INFO, logger="gochat")
    server = await rox_server(ai_max_output_tokens=100)
    bob = await users(server, "bob")
    fake.next(fg.EMPTY)
    await bob.send("/ai hi?")
    await bob.expect("[AI] Thinking...\r\n")
    line = await bob.expect("\r\n")
    assert (
        line == "✖ [AI] Rox ran out of room before finishing its answer. Ask for a shorter one.\r\n"
    )
    assert cell_width(line.rstrip()) <= 80
    assert "MAX_TOKENS (GOCHAT_AI_MAX_OUTPUT_TOKENS=100; 100 spent thinking)" in caplog.text


def test_every_failure_has_a_lobby_reason():
    """Each metrics label a failure can end with has a short category for the lobby."""
    assert set(failures.FAILURE_REASONS) == {*failures.OUTCOMES.values(), "timeout"}
    assert all(len(reason) <= 25 for reason in failures.FAILURE_REASONS.values())


async def test_timeout_gives_one_line(rox_server, fake, users):
    """A model slower than ai_timeout: the asker is told, the lobby too; bob may ask again."""
    server = await rox_server(ai_timeout=0.5)
    alice, bob = await users(server, "alice", "bob")
    fake.next(fg.SLOW)
    await bob.send("/ai are you there?")
    await bob.expect(failures.ANSWER_TIMEOUT.format(seconds=0.5))
    await alice.expect("bob asked AI: are you there?")
    await alice.expect("Rox could not answer bob's question (timed out).")
    await bob.send("/ai and now?")
    await answered(bob, "bob", "• two")
    assert server.assistant.outcomes == {"timeout": 1, "ok": 1}
    assert server.assistant.durations.count == 2
    stored = [m for m in server.core.lobbies.general.history if m.kind == "ai"]
    assert len(stored) == 1 and stored[0].sender == rox.NAME


async def test_escape_sequences_from_the_model_never_reach_a_terminal(rox_server, fake, users):
    """ESC [ 2 J, OSC and C1 CSI are removed; ANSI users get only our own colours."""
    server = await rox_server()
    alice, bob = await users(server, "alice", "bob")
    await alice.send("/color on")
    await alice.expect("Colour on.")
    fake.next(fg.OK, "Clear\x1b[2J this\x1b]0;pwned\x07 **now**\x9b31m ok\x07!")
    await bob.send("/ai clear the screen")

    plain = await answered(bob, "bob", "!")
    assert "Clear this now ok!" in plain
    assert "\x1b" not in plain and "\x9b" not in plain and "\x07" not in plain
    assert "[2J" not in plain and "pwned" not in plain and "31m" not in plain

    await alice.expect("[AI Response to bob]")
    coloured = await alice.expect("\r\n> ")
    assert "\x1b[1mnow\x1b[0m" in coloured  # **now** in bold: our escape, not the model's
    assert "\x1b[2J" not in coloured and "\x1b]" not in coloured and "\x07" not in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured).count("\x1b") == 0


async def test_long_answer_is_wrapped_for_80_columns(rox_server, fake, users):
    """Every line of the answer fits an 80-column terminal."""
    server = await rox_server()
    bob = await users(server, "bob")
    words = " ".join(f"word{n}" for n in range(200)) + " " + "x" * 150 + " THE-END"
    fake.next(fg.OK, f"- {words}\n\n{words}")
    await bob.send("/ai talk a lot")
    text = await answered(bob, "bob", "THE-END")  # the bullet
    rest = await bob.expect("THE-END")  # the paragraph
    lines = (text + rest).split("\r\n")
    assert len(lines) > 10
    assert all(cell_width(line) <= 80 for line in lines)


# -- never in the way -------------------------------------------------------------------


async def test_slow_answer_does_not_delay_other_users(rox_server, fake, users):
    """While Rox is thinking, alice and carol (and bob himself) keep chatting."""
    server = await rox_server(ai_timeout=20.0)
    alice, bob, carol = await users(server, "alice", "bob", "carol")
    fake.next(fg.SLOW)
    await bob.send("/ai think hard about this")
    await bob.expect("[AI] Thinking...")
    await wait_until(lambda: len(fake.requests) == 1, what="the call to reach the fake")

    for n in range(3):
        await alice.send(f"hi carol {n}")
        await carol.expect(f"hi carol {n}")
        await carol.send(f"hi alice {n}")
        await alice.expect(f"hi alice {n}")
    await bob.send("me too")
    await alice.expect("me too")
    assert "[AI Response" not in alice.buffer + bob.buffer + carol.buffer
    assert server.assistant.in_flight == 1

    fake.release()
    for client in (alice, bob, carol):
        await answered(client, "bob", "• two")
    await wait_until(lambda: server.assistant.in_flight == 0, what="the task to finish")


async def test_one_pending_question_per_user(rox_server, fake, users):
    """A second /ai while the first is pending is refused; after the answer it works."""
    server = await rox_server()
    bob = await users(server, "bob")
    fake.next(fg.SLOW)
    await bob.send("/ai first")
    await wait_until(lambda: len(fake.requests) == 1, what="the first call")
    await bob.send("/ai second")
    await bob.expect(rox.STILL_ANSWERING)
    fake.release()
    await answered(bob, "bob", "• two")
    await wait_until(lambda: server.assistant.in_flight == 0, what="the first task to end")
    await bob.send("/ai third")
    await answered(bob, "bob", "• two")
    assert [t[1].split("asks: ")[-1] for t in (r.turns[-1] for r in fake.requests)] == [
        "first",
        "third",
    ]


async def test_ai_counts_against_the_rate_limit(rox_server, fake, users):
    """/ai uses a message slot, and is refused when the user is over the limit."""
    server = await rox_server(rate_messages=2)
    bob, carol = await users(server, "bob", "carol")
    await bob.send("/ai one")
    await bob.expect("[AI] Thinking...")
    await bob.send("two")
    await bob.expect("two")
    await bob.send("three")
    await bob.expect("Rate limited!")

    await carol.send("uno")
    await carol.expect("uno")
    await carol.send("dos")
    await carol.expect("dos")
    await carol.send("/ai tres")
    await carol.expect("Rate limited!")
    await answered(bob, "bob", "• two")
    assert len(fake.requests) == 1


async def test_concurrency_cap_queues_and_refuses(rox_server, fake, users):
    """With one slot, a second question waits its turn; past the queue it is refused."""
    server = await rox_server(ai_concurrency=1, ai_queue=1)
    alice, bob, carol = await users(server, "alice", "bob", "carol")
    fake.next(fg.SLOW)
    await alice.send("/ai slow one")
    await wait_until(lambda: len(fake.requests) == 1, what="the first call")
    await bob.send("/ai queued one")
    await bob.expect("[AI] Thinking...")
    await carol.send("/ai one too many")
    await carol.expect(rox.QUEUE_FULL)
    assert len(fake.requests) == 1  # bob's question waits for the slot
    fake.release()
    await answered(bob, "alice", "• two")
    await answered(bob, "bob", "• two")
    assert len(fake.requests) == 2


async def test_answer_reaches_the_lobby_after_the_asker_left(rox_server, fake, users):
    """If the asker disconnects before the answer, the lobby still gets it."""
    server = await rox_server()
    alice, bob = await users(server, "alice", "bob")
    fake.next(fg.SLOW)
    await bob.send("/ai tell them for me")
    await wait_until(lambda: len(fake.requests) == 1, what="the call")
    await bob.close()
    await alice.expect("bob left the chat")
    fake.release()
    await answered(alice, "bob", "• two")


async def test_shutdown_cancels_pending_calls(rox_server, fake, users):
    """A pending call is cancelled at shutdown; nothing is left running."""
    server = await rox_server(ai_timeout=20.0)
    bob = await users(server, "bob")
    fake.next(fg.SLOW)
    await bob.send("/ai never mind")
    await wait_until(lambda: len(fake.requests) == 1, what="the call")
    await server.shutdown()
    farewell = await bob.read_until_closed()
    assert "shutting down" in farewell
    assert "[AI Response" not in farewell and "[AI] Rox" not in farewell
    assert server.assistant.in_flight == 0
    assert not server.tasks


async def test_question_too_long_is_refused(rox_server, fake, users):
    """Questions are capped at 1000 characters; nothing is sent."""
    server = await rox_server(max_message=5000)
    bob = await users(server, "bob")
    await bob.send("/ai " + "q" * 1001)
    await bob.expect("Question too long (1001 characters; the limit is 1000).")
    assert fake.requests == []


# -- Markdown layout (no sockets) ---------------------------------------------------------


def test_markdown_layout():
    """Bold, code, bullets and numbers become terminal text; nothing wider than WIDTH."""
    text = (
        "# Title\n**Bold** and `code` and *it*.\n\n\n- a bullet "
        + "long " * 30
        + "\n2. numbered\n```\nx = 1\n```"
    )
    lines = render_markdown(text)
    shown = plain_text(lines)
    assert shown.startswith("Title\nBold and code and it.\n\n• a bullet long")
    assert "\n2. numbered\n  x = 1" in shown
    assert "**" not in shown and "`" not in shown and "\n\n\n" not in shown
    assert all(cell_width("".join(s.text for s in line)) <= WIDTH for line in lines)
    styles = {span.style for line in lines for span in line}
    assert {"heading", "bold", "code", "italic", "marker"} <= styles


def test_answer_rendering_is_colourless_in_plain_mode():
    """Plain mode carries no escape at all; ANSI mode adds only SGR colour codes."""
    event = AIAnswer("general", "bob", render_markdown("**hi** `there`\n- item"))
    plain = render(event, False).decode()
    assert "\x1b" not in plain
    assert plain == "[AI Response to bob]\r\n  hi there\r\n  • item\r\n"
    ansi = render(event, True).decode()
    assert "\x1b[1mhi\x1b[0m" in ansi
    assert re.sub(r"\x1b\[[0-9;]*[mK]", "", ansi).count("\x1b") == 0
