"""`idle`: N logged-in connections that say nothing; what does each cost the server?

Memory per connection is (RSS with N users - RSS before) / N, read from
/proc/PID/status. It includes everything a connection brings: the
transport, the Session and Client objects, the LineReader, the timer handle,
dict and set entries, and the allocator's slack; kernel socket buffers are
not in RSS. `--tls` measures TLS connections (the asyncio TLS layer's buffers
and OpenSSL's state on top).

Why lobbies: every login announces the user to `general`, so N users all in
`general` cost N^2/2 join notices (50 million writes for 10,000 users) and
the run would measure fan-out, not idle cost. By default every user moves on
to a lobby of 100 (`idle<k>`, created by its first member with /create ...
no-pass), so each join is announced to at most 100 people. `--lobby-size 0`
keeps everyone in `general` to see the quadratic case.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from typing import Any

from bench.common import (
    HOST,
    Server,
    ServerOptions,
    machine_busy_cores,
    machine_cpu,
    process_cpu,
    raise_nofile,
    report,
    saturation_note,
    source_ip,
)

REFUSALS = (b"The server is full", b"Too many connections")
KEEP = 4096


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=10000, help="connections (10000)")
    parser.add_argument("--concurrency", type=int, default=200, help="logins in flight (200)")
    parser.add_argument(
        "--lobby-size",
        type=int,
        default=100,
        help="users per lobby after login; 0 = all stay in general (default 100)",
    )
    parser.add_argument("--hold", type=float, default=5.0, help="seconds to hold them all (5)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-login timeout (s)")
    parser.add_argument(
        "--leave",
        action="store_true",
        help="after the hold, every client closes at once and SIGTERM follows at once: "
        "server_stop_s is then how long the daemon takes to exit in a departure storm",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="connect over TLS (a throwaway self-signed certificate made with openssl)",
    )


class IdleClient(asyncio.Protocol):
    """Logs in, optionally moves to a lobby, then only discards what it is sent."""

    __slots__ = ("buf", "command", "done", "lost", "name", "stage", "transport", "want")

    def __init__(self, name: str, command: bytes | None, want: bytes | None) -> None:
        self.name = name
        self.command = command
        self.want = want
        self.buf = b""
        self.stage = "login"
        self.lost = False
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.name.encode() + b"\n")

    def data_received(self, data: bytes) -> None:
        if self.stage == "idle":
            return
        self.buf = self.buf[-KEEP:] + data
        if self.stage == "login":
            if any(r in self.buf for r in REFUSALS):
                self._finish("refused")
                return
            if f"Welcome, {self.name}!".encode() not in self.buf:
                return
            if self.command is None:
                self._finish("ok")
                return
            assert self.transport is not None
            self.stage = "join"
            self.buf = b""
            self.transport.write(self.command)
            return
        if self.want is not None and self.want in self.buf:
            self._finish("ok")

    def _finish(self, outcome: str) -> None:
        self.stage = "idle"
        self.buf = b""
        if not self.done.done():
            self.done.set_result(outcome)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.done.done():
            refused = any(r in self.buf for r in REFUSALS)
            self.done.set_result("refused" if refused else "lost")


async def _establish(
    port: int,
    count: int,
    concurrency: int,
    lobby_size: int,
    step_timeout: float,
    tls: ssl.SSLContext | None = None,
) -> tuple[list[IdleClient], dict[str, int], list[str]]:
    loop = asyncio.get_running_loop()
    outcomes: dict[str, int] = {"ok": 0, "refused": 0, "lost": 0, "timeout": 0, "error": 0}
    errors: list[str] = []
    clients: list[IdleClient] = []
    lobbies = 0 if lobby_size <= 0 else -(-count // lobby_size)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(index: int) -> None:
        name = f"i{index:06d}"
        if lobbies:
            group = index % lobbies
            verb = f"create idle{group} no-pass bench" if index < lobbies else f"join idle{group}"
            command: bytes | None = f"/{verb}\n".encode()
            want: bytes | None = f"You are now in #idle{group}".encode()
        else:
            command = want = None
        async with semaphore:
            try:
                _, client = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: IdleClient(name, command, want),
                        HOST,
                        port,
                        local_addr=(source_ip(index), 0),
                        ssl=tls,
                    ),
                    step_timeout,
                )
            except (OSError, TimeoutError) as exc:
                outcomes["error"] += 1
                if len(errors) < 5:
                    errors.append(f"{name}: {type(exc).__name__}: {exc}")
                return
            clients.append(client)
            try:
                outcome = await asyncio.wait_for(asyncio.shield(client.done), step_timeout)
            except TimeoutError:
                outcome = "timeout"
            outcomes[outcome] += 1

    if lobbies:
        # Creators first, so every /join finds its lobby.
        await asyncio.gather(*(one(i) for i in range(min(lobbies, count))))
    await asyncio.gather(*(one(i) for i in range(lobbies, count)))
    return clients, outcomes, errors


async def _scenario(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    # The lag probe runs beside the logins, the hold and the leaving, in its own process.
    probe = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.probe", str(server.port), stdout=asyncio.subprocess.PIPE
    )
    await asyncio.sleep(0.5)  # lets the probe log in before the storm; its own pace, no result
    rss_before = server.rss_kib()
    cpu0, machine0, gen0 = server.cpu(), machine_cpu(), process_cpu()
    started = time.perf_counter()
    tls = None
    if args.tls:
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE  # the server's throwaway self-signed certificate
    clients, outcomes, errors = await _establish(
        server.tls_port if args.tls else server.port,
        args.clients,
        args.concurrency,
        args.lobby_size,
        args.timeout,
        tls,
    )
    establish = time.perf_counter() - started
    cpu1, machine1, gen1 = server.cpu(), machine_cpu(), process_cpu()
    await asyncio.sleep(1.0)  # let the last join notices be written and freed
    rss_after = server.rss_kib()
    await asyncio.sleep(args.hold)
    rss_held = server.rss_kib()
    held = sum(1 for c in clients if not c.lost)
    if args.leave:  # a departure storm, SIGTERM right behind it
        for client in clients:
            if client.transport is not None:
                client.transport.abort()
    stop_started = time.perf_counter()
    exit_code = await asyncio.get_running_loop().run_in_executor(None, server.stop)
    stop_time = time.perf_counter() - stop_started
    for client in clients:
        if client.transport is not None:
            client.transport.abort()
    out, _ = await asyncio.wait_for(probe.communicate(), 30)
    lag = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    return {
        "lag": lag,
        "rss_before": rss_before,
        "rss_after": rss_after,
        "rss_held": rss_held,
        "outcomes": outcomes,
        "errors": errors,
        "held": held,
        "establish_s": establish,
        "server_cpu": cpu1 - cpu0,
        "generator_cpu": (gen1 - gen0) / establish,
        "busy": machine_busy_cores(machine0, machine1),
        "exit_code": exit_code,
        "stop_s": stop_time,
        "problems": server.log_problems(),
    }


def run(options: ServerOptions, args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = raise_nofile()
    warnings = []
    if soft < args.clients + 100:
        warnings.append(
            f"WARNING: generator open-file limit {soft} (hard {hard}) is too low for "
            f"{args.clients} connections; raise it (ulimit -Hn) or lower --clients"
        )
    with Server(options, tls=args.tls) as server:
        limits = server.nofile()
        if limits and limits[0] < args.clients + 100:
            warnings.append(
                f"WARNING: server open-file limit {limits[0]} (hard {limits[1]}) is too low "
                f"for {args.clients} connections"
            )
        m = asyncio.run(_scenario(server, args))
        described = server.describe()
    ok = m["outcomes"]["ok"]
    per_conn = (m["rss_after"] - m["rss_before"]) / ok if ok else None
    refused = m["outcomes"]["refused"]
    result: dict[str, Any] = {
        **described,
        "clients": args.clients,
        "lobby_size": args.lobby_size,
        "tls": args.tls,
        "logged_in": ok,
        "refused": refused,
        "failed": args.clients - ok - refused,
        "outcomes": m["outcomes"],
        "errors_sample": m["errors"],
        "held_after_s": {"seconds": args.hold, "still_connected": m["held"]},
        "server_rss_kib": {
            "before": m["rss_before"],
            "after": m["rss_after"],
            "after_hold": m["rss_held"],
        },
        "rss_kib_per_connection": round(per_conn, 3) if per_conn is not None else None,
        "establish_s": round(m["establish_s"], 2),
        "logins_per_s": round(ok / m["establish_s"], 1),
        "server_cpu_ms_per_login": round(m["server_cpu"] / max(1, ok) * 1e3, 3),
        "generator_cpu_fraction": round(m["generator_cpu"], 3),
        "machine_busy_cores": round(m["busy"], 2),
        "nofile": {"generator": [soft, hard], "server": list(limits) if limits else None},
        "server_exit": m["exit_code"],
        "server_stop_s": round(m["stop_s"], 2),
        "leave_storm": args.leave,
        "probe_rtt_ms": m["lag"],
        "server_log_problems": m["problems"],
    }
    lines = [
        f"server: {described['server_cmd']}  uvloop={described['uvloop']}",
        f"{ok}/{args.clients} logged in ({refused} refused, {result['failed']} failed) in "
        f"{m['establish_s']:.1f}s ({result['logins_per_s']}/s), "
        f"lobbies of {args.lobby_size or 'everyone (general)'}"
        f"{', over TLS' if args.tls else ''}",
        f"server RSS {m['rss_before']} -> {m['rss_after']} KiB "
        f"({m['rss_held']} after {args.hold:g}s): "
        f"{per_conn:.2f} KiB per connection"
        if per_conn is not None
        else "no connection held",
        f"still connected after {args.hold:g}s: {m['held']}",
        f"server CPU {result['server_cpu_ms_per_login']} ms per login; generator CPU "
        f"{m['generator_cpu']:.0%}; machine busy {m['busy']:.2f} of 2 cores",
        f"open-file limits: generator {soft}/{hard}, server "
        f"{'/'.join(map(str, limits)) if limits else '?'}",
        f"lag probe (one line at a time through the whole run): round trip max "
        f"{m['lag'].get('max_ms')} ms, p99 {m['lag'].get('p99_ms')} ms, n {m['lag'].get('n')}",
        f"server exit code {m['exit_code']} after {m['stop_s']:.1f}s of shutdown"
        + (" (SIGTERM right after every client closed)" if args.leave else ""),
        *warnings,
    ]
    if m["errors"]:
        lines.append("first errors: " + "; ".join(m["errors"][:3]))
    if note := saturation_note(m["generator_cpu"], "the generator"):
        lines.append(note)
    report("idle", lines, result, args.out)
    return result
