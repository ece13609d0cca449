"""`connect`: many short sessions, a fixed number at a time.

Each client connects (from its own 127.0.0.x, non-blocking, all on one
epoll loop so the generator stays cheap), waits for the name prompt,
sends a name, waits for "Welcome, <name>!" and closes. Two latencies per
client: connect-to-prompt (accept, admission and banner) and
connect-to-logged-in (that plus the login path: name check, registry, the
join notice to the lobby, the welcome). Clients close first, so TIME_WAIT
lands on the generator's side, spread over many source addresses.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import socket
import time
from typing import Any

from bench.common import (
    HOST,
    Server,
    ServerOptions,
    fmt_pcts,
    machine_busy_cores,
    machine_cpu,
    percentiles,
    process_cpu,
    report,
    saturation_note,
    source_ip,
)

PROMPT = b"Enter your username: "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=1000, help="sessions in all (1000)")
    parser.add_argument("--concurrency", type=int, default=50, help="at a time (50)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-step timeout (s)")


class _Attempt:
    """One session's progress through connect -> prompt -> welcome."""

    __slots__ = ("buf", "index", "name", "prompt_ns", "sock", "started_ns", "state", "want")

    def __init__(self, index: int, port: int) -> None:
        self.index = index
        self.name = f"c{index:06d}"
        self.want = f"Welcome, {self.name}!".encode()
        self.buf = b""
        self.state = "connecting"
        self.prompt_ns = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.bind((source_ip(index), 0))
        self.started_ns = time.perf_counter_ns()
        err = self.sock.connect_ex((HOST, port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))


def _drive(port: int, clients: int, concurrency: int, step_timeout: float) -> list[Any]:
    """Run every session on one epoll loop: a few syscalls per step, no coroutine machinery.

    An asyncio client (open_connection + StreamReader) cost about a core at
    3000 sessions/s and then measured itself; this costs a fraction of that.
    """
    results: list[Any] = [None] * clients
    poller = select.epoll()
    live: dict[int, _Attempt] = {}
    next_index = 0
    timeout_ns = int(step_timeout * 1e9)

    def finish(attempt: _Attempt, outcome: Any) -> None:
        results[attempt.index] = outcome
        fd = attempt.sock.fileno()
        live.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            poller.unregister(fd)
        attempt.sock.close()

    while next_index < clients or live:
        while next_index < clients and len(live) < concurrency:
            try:
                attempt = _Attempt(next_index, port)
            except OSError as exc:
                results[next_index] = f"{type(exc).__name__}: {exc}"
                next_index += 1
                continue
            next_index += 1
            live[attempt.sock.fileno()] = attempt
            poller.register(attempt.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)
        for fd, events in poller.poll(0.1):
            attempt = live.get(fd)
            if attempt is None:
                continue
            if attempt.state == "connecting":
                err = attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    finish(attempt, f"connect: {os.strerror(err)}")
                    continue
                attempt.state = "prompt"
                poller.modify(fd, select.EPOLLIN)
                if not events & select.EPOLLIN:
                    continue
            try:
                data = attempt.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                finish(attempt, f"{type(exc).__name__}: {exc}")
                continue
            now = time.perf_counter_ns()
            if not data:
                finish(attempt, f"closed by server in state {attempt.state}")
                continue
            attempt.buf = attempt.buf[-4096:] + data
            if attempt.state == "prompt" and PROMPT in attempt.buf:
                attempt.prompt_ns = now
                attempt.state = "welcome"
                attempt.buf = b""
                attempt.sock.send(attempt.name.encode() + b"\n")
            elif attempt.state == "welcome" and attempt.want in attempt.buf:
                finish(
                    attempt,
                    (
                        (attempt.prompt_ns - attempt.started_ns) / 1e6,
                        (now - attempt.started_ns) / 1e6,
                    ),
                )
        now = time.perf_counter_ns()
        for attempt in [a for a in live.values() if now - a.started_ns > timeout_ns]:
            finish(attempt, f"timeout in state {attempt.state}")
    poller.close()
    return results


def run(options: ServerOptions, args: argparse.Namespace) -> dict[str, Any]:
    with Server(options) as server:
        rss_before = server.rss_kib()
        cpu0, machine0, gen0 = server.cpu(), machine_cpu(), process_cpu()
        started = time.perf_counter()
        results = _drive(server.port, args.clients, args.concurrency, args.timeout)
        wall = time.perf_counter() - started
        cpu1, machine1, gen1 = server.cpu(), machine_cpu(), process_cpu()
        rss_after = server.rss_kib()
        exit_code = server.stop()
        problems = server.log_problems()
        described = server.describe()

    ok = [r for r in results if isinstance(r, tuple)]
    errors = [r for r in results if isinstance(r, str)]
    to_prompt = percentiles([r[0] for r in ok])
    to_login = percentiles([r[1] for r in ok])
    gen = (gen1 - gen0) / wall
    busy = machine_busy_cores(machine0, machine1)
    server_cpu = cpu1 - cpu0

    def rounded(stats: dict[str, Any]) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()}

    result: dict[str, Any] = {
        **described,
        "clients": args.clients,
        "concurrency": args.concurrency,
        "completed": len(ok),
        "failed": len(errors),
        "errors_sample": errors[:5],
        "connect_to_prompt_ms": rounded(to_prompt),
        "connect_to_login_ms": rounded(to_login),
        "connections_per_s": round(len(ok) / wall, 1),
        "server_cpu_ms_per_connection": round(server_cpu / max(1, len(ok)) * 1e3, 3),
        "server_rss_kib": {"before": rss_before, "after": rss_after},
        "generator_cpu_fraction": round(gen, 3),
        "machine_busy_cores": round(busy, 2),
        "server_exit": exit_code,
        "server_log_problems": problems,
    }
    lines = [
        f"server: {described['server_cmd']}  uvloop={described['uvloop']}",
        f"{len(ok)}/{args.clients} sessions, {args.concurrency} at a time, in {wall:.2f}s: "
        f"{result['connections_per_s']} connections/s; {len(errors)} failed",
        f"connect -> prompt:    {fmt_pcts(to_prompt)}",
        f"connect -> logged in: {fmt_pcts(to_login)}",
        f"server CPU {result['server_cpu_ms_per_connection']} ms per session; "
        f"RSS {rss_before} -> {rss_after} KiB",
        f"generator CPU {gen:.0%}; machine busy {busy:.2f} of 2 cores; "
        f"server exit code {exit_code}",
    ]
    if errors:
        lines.append("first errors: " + "; ".join(errors[:3]))
    if note := saturation_note(gen, "the generator"):
        lines.append(note)
    report("connect", lines, result, args.out)
    return result
