"""Soak: thousands of connections chatting, moving and reconnecting for minutes.

    python -m bench.soak --connections 2000 --minutes 10
    python bench/soak.py --connections 500 --minutes 2        # a quick run

The server runs as its own process (`python -m gochat`, no store, plain
output); this process plays every client. Clients log in from distinct
loopback addresses (8 per address, under the per-IP cap), spread over
--lobbies lobbies, and each one, independently and at random, says a line
(on average every --say seconds), moves to another lobby (every --move
seconds) or leaves the server and comes back (every --churn seconds). Every
lobby has one observer that never moves.

Every --interval seconds it prints the server's RSS and CPU, the number of
logged-in clients and the traffic so far. At the end it prints deliveries and
losses: a line is lost if its sender saw it echoed in lobby L (so the server
accepted it there) but L's observer never received it. "Memory must be flat
after warm-up": the last line compares RSS at the end with RSS once every
client had logged in.

Not part of the test run (see tests/hostile for the bounded versions).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import resource
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PER_ADDRESS = 8  # clients per loopback address (the default per-IP cap is 10)
MESSAGE = re.compile(rb"\xe2\x95\xb0\xe2\x94\x80> sk (\w+) (\d+)")  # "╰─> sk <name> <seq>"
MOVED = re.compile(rb"You are now in #(\w+)")


# -- the server process --------------------------------------------------------------


class Server:
    """`python -m gochat` with a scratch directory; RSS and CPU read from /proc."""

    def __init__(self, python: str, env_extra: dict[str, str]) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="gochat-soak-"))
        self.log_path = self.workdir / "gochat.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOCHAT_")}
        env.pop("NO_COLOR", None)
        env["PYTHONPATH"] = str(REPO) + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        env.update(
            GOCHAT_HOST="127.0.0.1",
            GOCHAT_PORT="0",
            GOCHAT_TLS_CERT="none",  # TLS off
            GOCHAT_JSON_PORT="0",
            GOCHAT_COLOR="never",
            GOCHAT_DB="none",
            GOCHAT_LOG_LEVEL="WARNING",
        )
        env.update(env_extra)
        self.env = env
        self.python = python
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self._cpu = (0.0, time.monotonic())

    async def start(self) -> None:
        with open(self.log_path, "wb") as log:  # noqa: ASYNC230 - once, before the run
            self.proc = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "gochat",
                "--log-level",
                self.env["GOCHAT_LOG_LEVEL"],
                cwd=self.workdir,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        # The port is logged at INFO; WARNING hides it, so ask the kernel instead.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            port = self._listening_port()
            if port:
                self.port = port
                self._cpu = (self.cpu_seconds(), time.monotonic())
                return
            if self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        raise SystemExit("server did not start:\n" + self.log_path.read_text()[-2000:])

    def _listening_port(self) -> int:
        """The TCP port the server process listens on, from /proc (0 if none yet)."""
        assert self.proc is not None
        inodes = set()
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
                target = os.readlink(f"/proc/{self.proc.pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        with open("/proc/net/tcp") as table:
            for row in table.readlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:  # state LISTEN
                    return int(cols[1].split(":")[1], 16)
        return 0

    def rss_mb(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def cpu_percent(self) -> float:
        """Server CPU use since the last call, in % of one core."""
        cpu, when = self.cpu_seconds(), time.monotonic()
        last_cpu, last_when = self._cpu
        self._cpu = (cpu, when)
        return 100 * (cpu - last_cpu) / max(1e-6, when - last_when)

    async def stop(self) -> tuple[int | None, float]:
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode, time.monotonic() - started


# -- the clients -------------------------------------------------------------------


@dataclass
class Totals:
    said: int = 0  # lines written
    accepted: dict[tuple[str, int], str] = field(default_factory=dict)  # echoed: lobby
    seen: dict[str, set[tuple[str, int]]] = field(default_factory=dict)  # observer: lines
    deliveries: int = 0
    moves: int = 0
    reconnects: int = 0
    rate_limited: int = 0
    dropped: int = 0  # connections the server closed without being asked
    logged_in: int = 0
    ending: bool = False  # from here on the server closing a connection is expected


class Client(asyncio.Protocol):
    """One soak user: a name, a home address, the lobby it is in, what it saw."""

    def __init__(self, name: str, local: str, totals: Totals, observer: str | None) -> None:
        self.name = name
        self.local = local
        self.totals = totals
        self.observer = observer  # lobby name if this client only watches
        self.transport: asyncio.Transport | None = None
        self.pending = b""
        self.lobby = "general"
        self.welcomed = asyncio.Event()
        self.moved = asyncio.Event()
        self.closed: asyncio.Future[None] | None = None
        self.leaving = False
        self.seq = 0

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        self.welcomed.clear()
        self.lobby = "general"
        self.leaving = False
        await loop.create_connection(lambda: self, "127.0.0.1", port, local_addr=(self.local, 0))
        assert self.transport is not None
        self.transport.write(self.name.encode() + b"\r\n")
        await asyncio.wait_for(self.welcomed.wait(), 60)
        self.totals.logged_in += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        *lines, self.pending = (self.pending + data).split(b"\r\n")
        totals = self.totals
        for line in lines:
            match = MESSAGE.search(line)
            if match:
                totals.deliveries += 1
                sender, seq = match.group(1).decode(), int(match.group(2))
                if sender == self.name:
                    totals.accepted[sender, seq] = self.lobby
                if self.observer is not None:
                    totals.seen.setdefault(self.observer, set()).add((sender, seq))
                continue
            if b"Welcome, " in line:
                self.welcomed.set()
            elif b"You are now in #" in line:
                moved = MOVED.search(line)
                if moved:
                    self.lobby = moved.group(1).decode()
                    self.moved.set()
            elif b"Rate limited!" in line:
                totals.rate_limited += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.welcomed.is_set():
            self.totals.logged_in -= 1
        if not self.leaving and not self.totals.ending:
            self.totals.dropped += 1
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)
        self.transport = None

    def send(self, line: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(line.encode() + b"\r\n")

    async def move(self, lobby: str) -> None:
        self.moved.clear()
        self.send(f"/join {lobby}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.moved.wait(), 30)

    def say(self) -> None:
        self.seq += 1
        self.totals.said += 1
        self.send(f"sk {self.name} {self.seq:07d} soaking in #{self.lobby}")

    async def leave(self) -> None:
        self.leaving = True
        self.send("/quit")
        if self.closed is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed, 30)


async def behave(client: Client, args: argparse.Namespace, lobbies: list[str], end: float) -> None:
    """Say, move and reconnect at random (Poisson) until `end`."""
    rng = random.Random(hash(client.name))
    loop = asyncio.get_running_loop()
    rates = (1 / args.say, 1 / args.move, 1 / args.churn)
    total = sum(rates)
    while loop.time() < end:
        await asyncio.sleep(min(rng.expovariate(total), max(0.0, end - loop.time())))
        if loop.time() >= end or client.transport is None:
            break
        roll = rng.random() * total
        if roll < rates[0]:
            client.say()
        elif roll < rates[0] + rates[1]:
            await client.move(rng.choice([lobby for lobby in lobbies if lobby != client.lobby]))
            client.totals.moves += 1
        else:
            await client.leave()
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            if loop.time() >= end:
                break
            await client.connect(args.port)
            await client.move(rng.choice(lobbies))
            client.totals.reconnects += 1


def local_address(index: int) -> str:
    n = index // PER_ADDRESS
    return f"127.70.{n // 250}.{n % 250 + 1}"


async def soak(args: argparse.Namespace) -> int:
    raise_nofile()
    server = Server(args.python, dict(kv.split("=", 1) for kv in args.env))
    await server.start()
    args.port = server.port
    loop = asyncio.get_running_loop()
    totals = Totals()
    lobbies = [f"soak{i:02d}" for i in range(args.lobbies)]
    print(
        f"soak: {args.connections} connections, {args.lobbies} lobbies, {args.minutes:g} min; "
        f"each client says a line every {args.say:g} s, moves every {args.move:g} s, "
        f"reconnects every {args.churn:g} s (averages); server pid {server.proc.pid} "  # type: ignore[union-attr]
        f"port {server.port}, RSS {server.rss_mb():.1f} MB",
        flush=True,
    )

    observers = []
    for i, lobby in enumerate(lobbies):
        observer = Client(f"obs{i:02d}", local_address(i), totals, lobby)
        await observer.connect(server.port)
        observer.send(f"/create {lobby} no-pass soak lobby {i}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(observer.moved.wait(), 30)
        observers.append(observer)

    async def keep_observers_awake() -> None:
        # An observer never speaks; a blank line now and then keeps the idle timeout away.
        while True:
            await asyncio.sleep(60)
            for observer in observers:
                observer.send("")

    awake = asyncio.create_task(keep_observers_awake())
    started = time.monotonic()
    clients = [
        Client(f"s{i:05d}", local_address(args.lobbies + i), totals, None)
        for i in range(args.connections - args.lobbies)
    ]
    for start in range(0, len(clients), 100):
        batch = clients[start : start + 100]
        await asyncio.gather(*(c.connect(server.port) for c in batch))
        await asyncio.gather(*(c.move(lobbies[i % len(lobbies)]) for i, c in enumerate(batch)))
    ramp = time.monotonic() - started
    warm_rss = server.rss_mb()
    print(
        f"[{ramp:6.1f}s] all {args.connections} logged in (ramp-up {ramp:.1f} s); "
        f"server RSS {warm_rss:.1f} MB, CPU {server.cpu_percent():.0f}%",
        flush=True,
    )

    end = loop.time() + args.minutes * 60
    tasks = [asyncio.create_task(behave(c, args, lobbies, end)) for c in clients]
    samples: list[float] = [warm_rss]
    last_said = last_delivered = 0
    own_cpu = time.process_time(), time.monotonic()
    while loop.time() < end:
        await asyncio.sleep(min(args.interval, max(0.0, end - loop.time())))
        rss = server.rss_mb()
        samples.append(rss)
        elapsed = time.monotonic() - started
        now_cpu = time.process_time(), time.monotonic()
        clients_cpu = 100 * (now_cpu[0] - own_cpu[0]) / max(1e-6, now_cpu[1] - own_cpu[1])
        own_cpu = now_cpu
        print(
            f"[{elapsed:6.1f}s] RSS {rss:7.1f} MB  CPU {server.cpu_percent():5.1f}% "
            f"(clients {clients_cpu:3.0f}%)  "
            f"online {totals.logged_in:5d}  said {totals.said - last_said:6d}  "
            f"delivered {totals.deliveries - last_delivered:8d}  moves {totals.moves:6d}  "
            f"reconnects {totals.reconnects:5d}  rate-limited {totals.rate_limited:4d}  "
            f"dropped {totals.dropped:3d}",
            flush=True,
        )
        last_said, last_delivered = totals.said, totals.deliveries
    for task in [*tasks, awake]:
        task.cancel()
    outcomes = await asyncio.gather(*tasks, awake, return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    await asyncio.sleep(args.settle)  # the last lines are still on their way

    lost = [
        (key, lobby)
        for key, lobby in totals.accepted.items()
        if lobby in totals.seen and key not in totals.seen[lobby]
    ]
    unobserved = sum(1 for lobby in totals.accepted.values() if lobby not in lobbies)
    final_rss = server.rss_mb()
    totals.ending = True
    code, took = await server.stop()
    growth = final_rss - warm_rss
    print(
        f"\nresult: {totals.said} lines said, {len(totals.accepted)} accepted "
        f"({unobserved} in #general, not observed), {totals.deliveries} deliveries, "
        f"{len(lost)} lost; {totals.moves} moves, {totals.reconnects} reconnects, "
        f"{totals.rate_limited} rate-limited, {totals.dropped} connections dropped by the server"
    )
    print(
        f"memory: RSS {warm_rss:.1f} MB after warm-up, {final_rss:.1f} MB at the end "
        f"({growth:+.1f} MB, {growth / max(args.minutes, 1e-9):+.2f} MB/min); "
        f"min {min(samples):.1f}, max {max(samples):.1f} MB"
    )
    print(f"shutdown: exit {code} after {took:.2f} s; server log {server.log_path}")
    if errors:
        print(f"client errors: {len(errors)}, first: {errors[0]!r}")
    for key, lobby in lost[:10]:
        print(f"  lost: {key} in #{lobby}")
    return 0 if not lost and not totals.dropped and not errors and code == 0 else 1


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--lobbies", type=int, default=20)
    parser.add_argument("--say", type=float, default=30.0, help="mean seconds between lines")
    parser.add_argument("--move", type=float, default=180.0, help="mean seconds between moves")
    parser.add_argument(
        "--churn", type=float, default=300.0, help="mean seconds between leave-and-return"
    )
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between reports")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait at the end")
    parser.add_argument("--python", default=sys.executable, help="interpreter for -m gochat")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra server setting"
    )
    args = parser.parse_args(argv)
    if args.connections <= args.lobbies:
        parser.error("--connections must exceed --lobbies (one observer per lobby)")
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
