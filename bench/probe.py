"""A loop-lag probe: how long does the server take to answer one line, all along a run?

Run as its own process (`python -m bench.probe PORT`), so its timing is not
the load generator's: it logs in, creates a lobby of its own (so its lines
reach nobody else), then sends one short line at a time, every INTERVAL, and
times its echo. An echo can only be as late as the server's longest busy
callback in between, so the largest round trip bounds the loop's longest
stall (plus one loopback round trip). It stops when the server closes the
connection or after DURATION seconds, and prints one JSON line.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time

INTERVAL = 0.01  # seconds between a line's echo and the next line
DURATION = 600.0
ECHO = re.compile(rb"probe-(\d{19})")


def main(port: int, host: str = "127.0.0.1") -> None:
    name = f"probe{os.getpid() % 100000}"
    sock = socket.create_connection((host, port), timeout=30)
    buffer = b""

    def until(needle: bytes) -> None:
        nonlocal buffer
        while needle not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buffer += chunk
        buffer = buffer.split(needle, 1)[1]

    until(b"username: ")
    sock.sendall(f"{name}\r\n/create {name} - lag probe\r\n".encode())
    until(f"You are now in #{name}".encode())
    rtts: list[float] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < DURATION:
            sent = time.monotonic_ns()
            sock.sendall(b"probe-%019d\r\n" % sent)
            while True:
                match = ECHO.search(buffer)
                if match and int(match.group(1)) == sent:
                    buffer = buffer[match.end() :]
                    break
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                buffer = buffer[-64:] + chunk
            rtts.append((time.monotonic_ns() - sent) / 1e6)
            time.sleep(INTERVAL)  # pacing the probe, not waiting for a result
    except (ConnectionError, OSError, TimeoutError):
        pass
    rtts.sort()
    out = {
        "n": len(rtts),
        "max_ms": round(rtts[-1], 2) if rtts else None,
        "p99_ms": round(rtts[int(len(rtts) * 0.99)], 2) if rtts else None,
        "p50_ms": round(rtts[len(rtts) // 2], 2) if rtts else None,
    }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
