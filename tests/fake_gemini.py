"""A small HTTP server on 127.0.0.1 that speaks enough of the Gemini REST API for Rox's tests.

It answers ``POST /{v1|v1beta}/models/{model}:generateContent``, records every
request (path, headers, JSON body), and answers each one the way the test
asked: normally, 429, 500, 404, a refused key, malformed JSON, an empty
candidate (finish reason MAX_TOKENS, no text), or slowly (held until the test
releases it or the fake closes). It runs in its own thread, so the event loop
under test is never blocked by it, and the real ``google-genai`` client talks
to it through ``http_options.base_url``.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH_RE = re.compile(r"^/(v1|v1beta)/models/([^/:]+):generateContent$")
HOLD_LIMIT = 30.0  # a slow answer is never held longer than this, whatever the test does

# How to answer one request.
OK = "ok"
SLOW = "slow"
RATE_LIMITED = "429"
SERVER_ERROR = "500"
NOT_FOUND = "404"
BAD_KEY = "bad-key"
MALFORMED = "malformed"
EMPTY = "empty"


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it."""

    path: str
    version: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def system(self) -> str:
        """The system instruction's text."""
        parts = (self.body.get("systemInstruction") or {}).get("parts") or []
        return "".join(p.get("text", "") for p in parts)

    @property
    def turns(self) -> list[tuple[str, str]]:
        """(role, text) for every content, oldest first."""
        return [
            (c.get("role", ""), "".join(p.get("text", "") for p in c.get("parts") or []))
            for c in self.body.get("contents") or []
        ]

    @property
    def everything(self) -> str:
        """All text the model would see, for 'does it mention X' checks."""
        return self.system + "\n" + "\n".join(text for _, text in self.turns)

    @property
    def api_key(self) -> str | None:
        return self.headers.get("x-goog-api-key")


class FakeGemini:
    """Start with ``start()``; ``url`` is the base URL; ``close()`` releases and stops."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.text = "**Sure.** Here's the deal:\n- one\n- two"
        self.mode = OK
        self._script: deque[tuple[str, str | None]] = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- what the test controls ------------------------------------------------

    def next(self, mode: str, text: str | None = None) -> None:
        """Answer the next request (after any already scripted) this way."""
        with self._lock:
            self._script.append((mode, text))

    def release(self) -> None:
        """Let every held (slow) answer go, now and from now on."""
        self._release.set()

    # -- life ------------------------------------------------------------------

    def start(self) -> FakeGemini:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- the server side -------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        match = PATH_RE.match(request.path.split("?", 1)[0])
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length)
        if match is None:
            self._reply(request, 404, {"error": {"code": 404, "message": "no such path"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._reply(request, 400, {"error": {"code": 400, "message": "bad JSON"}})
            return
        recorded = Recorded(
            request.path,
            match.group(1),
            match.group(2),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        with self._lock:
            self.requests.append(recorded)
            mode, text = self._script.popleft() if self._script else (self.mode, None)
        text = self.text if text is None else text
        if mode == SLOW:
            self._release.wait(HOLD_LIMIT)
            mode = OK
        if mode == OK:
            self._reply(request, 200, _answer(text, "STOP"))
        elif mode == EMPTY:
            self._reply(
                request,
                200,
                {
                    "candidates": [{"content": {"role": "model"}, "finishReason": "MAX_TOKENS"}],
                    "usageMetadata": {"promptTokenCount": 10, "thoughtsTokenCount": 100},
                },
            )
        elif mode == MALFORMED:
            self._send(request, 200, b'{"candidates": [{"content": ')
        elif mode == RATE_LIMITED:
            self._reply(request, 429, _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded."))
        elif mode == SERVER_ERROR:
            self._reply(request, 500, _error(500, "INTERNAL", "Internal error."))
        elif mode == NOT_FOUND:
            message = f"models/{recorded.model} is not found for API version {recorded.version}"
            self._reply(request, 404, _error(404, "NOT_FOUND", message))
        elif mode == BAD_KEY:
            # Real Gemini does not echo the key; this fake does, to prove it is never logged.
            message = f"API key not valid: {recorded.api_key}. Please pass a valid API key."
            self._reply(request, 400, _error(400, "INVALID_ARGUMENT", message))
        else:
            raise AssertionError(f"unknown fake mode {mode!r}")

    def _reply(self, request: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        self._send(request, status, json.dumps(payload).encode())

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, data: bytes) -> None:
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json; charset=UTF-8")
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout): nothing to do


def _answer(text: str, finish: str) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": finish,
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5},
        "modelVersion": "fake",
    }


def _error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}
