"""Rox: the Gemini assistant in every lobby, never in the way.

`/ai <question>` is validated here synchronously (enabled, length, one pending
question per user, queue room), announced to the lobby at once, and then
answered by a server task: the asker's session and everyone else's chat go
on while the model thinks. Each call waits for one of `ai_concurrency`
slots, is bounded by `asyncio.timeout` (the SDK's own timeout raises an
httpx error, not `APIError`), and runs with the SDK's retries off.

Every lobby has its own conversation (the last `ai_history_turns` turns,
forgotten after `ai_history_minutes` without questions) and its own persona,
the system instruction. The request carries the lobby's last
`ai_context_lines` chat lines so Rox knows what is being talked about; that
memory is `gochat.rox_conversations`.

Whatever goes wrong (timeout, 429, 5xx, a refused key, a retired model, an
unreadable reply, an empty answer) becomes one line to the asker, one short
line with a reason category to the rest of the lobby (who saw the question
and would otherwise wait for an answer that never comes; the asker does not
get it as well, their own line says the same more precisely), and one line
to the operator log; the exception's text never reaches a user and the API
key never reaches the log. The answer itself is cleaned with `wire.clean_text`
line by line before the Markdown layout, so no escape sequence from the
model survives; colour is added by the renderer, in ANSI mode only. The wording
and the reading of answers are in `gochat.rox_failures`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gochat.changes import InLobby, ToUsers
from gochat.errors import UserError
from gochat.events import AIAnswer, AIQuestion, AIThinking, ChatMessage, Level, Notice
from gochat.fanout import send
from gochat.markdown import WIDTH, plain_text, render_markdown
from gochat.rox_conversations import Conversations, context_lines, user_turn
from gochat.rox_failures import (
    ANSWER_BUG,
    FAILURE_REASONS,
    LOBBY_FAILED,
    OUTCOMES,
    answer_text,
    describe_failure,
    redact,
    shorten,
)
from gochat.stats import AI_BUCKETS, DurationHistogram

if TYPE_CHECKING:
    from google import genai

    from gochat.chat import ChatCore
    from gochat.clients import Client
    from gochat.config import Config
    from gochat.lobbies import Lobby

log = logging.getLogger("gochat.rox")

NAME = "Rox"
PICTURE = "🤖"
MAX_QUESTION = 1000
MAX_PERSONA = 1000

DEFAULT_PERSONA = (
    "You are Rox, a regular of this chat server: blunt, quick and funny, never cruel. "
    "You know you live in a terminal, you don't do small talk, and you keep answers "
    "short: a few lines, straight to the point, one joke at most."
)
SETTING = (
    "Setting: you are Rox, the assistant in the #{lobby} lobby of gochat, a chat server "
    "people use from a terminal with nc or telnet. People ask you things with /ai; each "
    "question says who asked and may come with the lobby's recent chat lines. Everyone in "
    "the lobby sees your answer in an 80-column terminal: keep it short and use at most "
    "light Markdown (**bold**, `code`, short bullet lists); no tables, no images."
)

NOT_AVAILABLE = "AI is not available on this server."
STILL_ANSWERING = "Rox is still answering your last question."
QUEUE_FULL = "Rox has too many questions waiting right now. Try again in a minute."


class Rox:
    """The assistant service: one Gemini client, a concurrency cap, a conversation per lobby."""

    def __init__(
        self,
        config: Config,
        core: ChatCore,
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
    ) -> None:
        self.config = config
        self.core = core
        self._spawn = spawn
        self.enabled = bool(config.ai_api_key)
        self._client: genai.Client | None = None
        self._slots = asyncio.Semaphore(config.ai_concurrency)
        self._pending: set[Client] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._conversations = Conversations(config, core)
        self.outcomes: Counter[str] = Counter()  # finished questions by OUTCOMES value
        self.durations = DurationHistogram(AI_BUCKETS)  # seconds at the model, any outcome

    # -- operator view ----------------------------------------------------------

    def status(self) -> str:
        """The startup log line."""
        if not self.enabled:
            return "AI features disabled (no API key)"
        via = " via a custom base URL" if self.config.ai_base_url else ""
        return (
            f"AI features enabled (model {self.config.ai_model}{via}, "
            f"{self.config.ai_concurrency} calls at once)"
        )

    @property
    def in_flight(self) -> int:
        """Questions asked and not yet answered (waiting for a slot or at the model)."""
        return len(self._tasks)

    # -- commands -----------------------------------------------------------------

    def ask(self, client: Client, question: str) -> None:
        """Handle `/ai <question>`: announce it and start the answer task; never waits."""
        if not self.enabled:
            raise UserError(NOT_AVAILABLE, code="unavailable")
        lobby = self.core.lobby_of(client)
        question = question.strip()
        if len(question) > MAX_QUESTION:
            raise UserError(
                f"Question too long ({len(question)} characters; the limit is {MAX_QUESTION})."
            )
        if client in self._pending:
            raise UserError(STILL_ANSWERING)
        if len(self._tasks) >= self.config.ai_concurrency + self.config.ai_queue:
            raise UserError(QUEUE_FULL)
        now = self.core.clock()
        conversation = self._conversations.current(lobby, now)
        conversation.last_question = now
        context = context_lines(lobby, self.config.ai_context_lines)
        self.core.emit(
            AIQuestion(lobby.name, client.name, client.picture, question), InLobby(lobby.key)
        )
        send(AIThinking(), client)
        self._pending.add(client)
        task = self._spawn(self._answer(client, lobby, question, context))
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._finished, client))
        log.info(
            "AI question from %s in #%s (%d chars, %d waiting or in flight)",
            client.name,
            lobby.name,
            len(question),
            len(self._tasks),
        )

    def set_persona(self, client: Client, prompt: str) -> bool:
        """Handle `/setai <prompt>|reset`: the lobby's creator sets Rox's persona there.

        Returns whether the persona changed. Resetting a persona that is already
        the default answers only the asker: announcing a change that did not
        happen would mislead the lobby, and wiping the conversation for it would
        make Rox forget for nothing.
        """
        if not self.enabled:
            raise UserError(NOT_AVAILABLE, code="unavailable")
        lobby = self.core.check_owner(client, "Rox's persona")
        prompt = prompt.strip()
        if prompt.lower() == "reset":
            if lobby.persona is None:
                self.core.tell(client, f"Rox already has the default persona in #{lobby.name}.")
                return False
            lobby.persona = None
            text = f"{client.name} reset Rox's persona in #{lobby.name} to the default."
        else:
            if len(prompt) > MAX_PERSONA:
                raise UserError(
                    f"Persona too long ({len(prompt)} characters; the limit is {MAX_PERSONA})."
                )
            lobby.persona = prompt
            text = f"{client.name} gave Rox a new persona in #{lobby.name}: {shorten(prompt, 60)}"
        self._conversations.forget(lobby)
        self.core.emit(Notice(text, Level.INFO), InLobby(lobby.key))
        log.info(
            "AI persona of #%s %s by %s",
            lobby.name,
            "custom" if lobby.persona else "reset",
            client.name,
        )
        return True

    # -- the request ----------------------------------------------------------------

    def system_instruction(self, lobby: Lobby) -> str:
        """The lobby's persona (or Rox's default) plus where Rox is and how it is read."""
        persona = lobby.persona or DEFAULT_PERSONA
        return f"{persona}\n\n{SETTING.format(lobby=lobby.name)}"

    # -- the call ---------------------------------------------------------------------

    def _gemini(self) -> genai.Client:
        """The SDK client, imported and built on first use (google.genai takes ~1 s to import)."""
        from google import genai
        from google.genai import types

        if self._client is None:
            options = types.HttpOptions(timeout=int(self.config.ai_timeout * 1000))
            if self.config.ai_base_url:
                options.base_url = self.config.ai_base_url
            self._client = genai.Client(
                api_key=self.config.ai_api_key, vertexai=False, http_options=options
            )
        return self._client

    async def _answer(
        self, client: Client, lobby: Lobby, question: str, context: list[str]
    ) -> None:
        from google.genai import types

        config = self.config
        asker = client.name
        loop = asyncio.get_running_loop()
        started: float | None = None
        try:
            async with self._slots:
                conversation = self._conversations.current(lobby, self.core.clock())
                history = list(conversation.turns)
                prompt = user_turn(asker, question, context, lobby.name)
                contents = [
                    types.Content(role=role, parts=[types.Part(text=text)])
                    for role, text in history
                ]
                contents.append(types.Content(role="user", parts=[types.Part(text=prompt)]))
                generation = types.GenerateContentConfig(
                    system_instruction=self.system_instruction(lobby),
                    max_output_tokens=config.ai_max_output_tokens,
                )
                started = loop.time()
                async with asyncio.timeout(config.ai_timeout):
                    response = await self._gemini().aio.models.generate_content(
                        model=config.ai_model, contents=contents, config=generation
                    )
                elapsed = loop.time() - started
            text = answer_text(response)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if started is not None:
                self.durations.observe(loop.time() - started)
            user_line, problem, level = describe_failure(exc, config)
            outcome = OUTCOMES.get(user_line, "timeout")
            self.outcomes[outcome] += 1
            log.log(
                level,
                "AI answer for %s in #%s failed: %s",
                asker,
                lobby.name,
                redact(problem, config.ai_api_key),
                exc_info=exc if user_line == ANSWER_BUG else None,
            )
            send(Notice(user_line, Level.ERROR), client)
            # The asker's own line says it better; the others get the short one.
            reason = FAILURE_REASONS.get(outcome, FAILURE_REASONS["error"])
            others = ToUsers(tuple(key for key in lobby.members if key != client.key))
            self.core.emit(
                Notice(LOBBY_FAILED.format(asker=asker, reason=reason), Level.WARN), others
            )
            return
        lines = render_markdown(text)
        now = self.core.clock()
        conversation.turns.extend((("user", f"{asker} asks: {question}"), ("model", text)))
        head = shorten(f"@{asker} asked: {question}", WIDTH)
        body = f"{head}\n{plain_text(lines)}"
        answer = ChatMessage(lobby.name, NAME, PICTURE, body, now, "ai", asker)
        recorded = self.core.record(lobby, answer)
        self.outcomes["ok"] += 1
        self.durations.observe(elapsed)
        event = AIAnswer(lobby.name, asker, lines, recorded.id)
        self.core.emit(event, InLobby(lobby.key))
        if not self.core.is_in(client, lobby) and self.core.clients.get(asker) is client:
            send(event, client)  # moved on meanwhile: the asker still gets the answer
        log.info(
            "AI answer for %s in #%s: %d chars in %.1f s", asker, lobby.name, len(text), elapsed
        )

    def _finished(self, client: Client, task: asyncio.Task[Any]) -> None:
        self._pending.discard(client)
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("AI answer for %s failed", client.name, exc_info=task.exception())
            send(Notice(ANSWER_BUG, Level.ERROR), client)

    async def close(self) -> None:
        """Cancel pending questions and close the HTTP client (at shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.aio.aclose()
            except Exception as exc:  # closing is best effort
                log.debug("closing the Gemini client: %s", type(exc).__name__)
