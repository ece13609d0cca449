"""The bytes a connection gets before it chats: the banner, or why it is on the wrong port.

Both are worded once and handed over as they are, so they sit here together,
apart from the server that only decides when each is sent.
"""

from __future__ import annotations

from gochat.events import Raw
from gochat.frontends.text import NAME_PROMPT
from gochat.render import BOLD, CYAN, RESET, render
from gochat.wire import encode

BANNER = r"""
                   _           _
   __ _  ___   ___| |__   __ _| |_
  / _` |/ _ \ / __| '_ \ / _` | __|
 | (_| | (_) | (__| | | | (_| | |_
  \__, |\___/ \___|_| |_|\__,_|\__|
  |___/
"""
WELCOME = "Welcome to gochat! Names are 2-20 letters, digits, _ or -."


def banners() -> dict[bool, bytes]:
    """Banner, welcome and name prompt, with colour (True) and without: rendered once."""
    return {
        colour: encode((f"{BOLD}{CYAN}{BANNER}{RESET}" if colour else BANNER) + f"{WELCOME}\n")
        + render(Raw(NAME_PROMPT), colour)
        for colour in (True, False)
    }


def foreign_protocol_reply(kind: str, tls_port: int | None) -> bytes:
    """The one line a TLS, HTTP or SSH client gets on the plain port (`tls_port`: if bound)."""
    if kind == "tls":
        if tls_port is not None:
            text = (
                f"This is the plain-text chat port; TLS is on port {tls_port} "
                f"(openssl s_client -quiet -connect HOST:{tls_port})."
            )
        else:
            text = "This is a plain-text chat port and TLS is not enabled; use nc or telnet."
        return encode(text + "\n")
    server = "an SSH server" if kind == "ssh" else "a web server"
    text = f"This is a plain-text chat port, not {server}; connect with nc or telnet."
    if kind == "http":
        body = encode(text + "\n")
        head = (
            "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        return head.encode() + body
    return encode(text + "\n")
