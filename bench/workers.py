"""Load-generator processes for `fanout` and `slow`: plain sockets and one epoll each.

Why not asyncio here: at 1000 msgs/s to 100 users the generator must take in
~100k deliveries a second on what is left of a 2-core machine. A bare epoll
loop that does one `recv` per ready socket and `bytes.count`s a marker costs
a fraction of a StreamReader's per-line work, and lets us measure the
generator's own CPU per process.

Three kinds of work, chosen per process:

* ``sample``: every line is split and its token parsed, giving a latency per
  delivery and the largest gap between consecutive deliveries on each socket.
  The process never sleeps, so its timestamps are as fresh as the loop allows.
* ``count``: only counts the token marker in each chunk (no line splitting)
  and sleeps ``batch_s`` between polls, so each `recv` returns several
  messages at once. This keeps the receive side cheap; batching on the client
  side does not change what the server does (it writes each message when it
  happens, the kernel buffers it).
* a ``SendPlan`` on top of either: the process sends messages on a fixed
  schedule, round robin over its sockets, each stamped with
  `time.monotonic_ns()` (CLOCK_MONOTONIC, shared by all processes).

A token is ``#T:<sender>:<seq>:<send_ns>:`` followed by padding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import select
import socket
import time
from array import array
from collections.abc import Callable
from typing import Any

from bench.common import HOST, BenchError, process_cpu, raise_nofile, source_ip

MARKER = b"#T:"
_TAIL = len(MARKER) - 1
RECV_SIZE = 1 << 18


@dataclasses.dataclass
class SendPlan:
    """A fixed-rate schedule: message i is due at t0 + i / rate."""

    rate: float
    count: int
    size: int


@dataclasses.dataclass
class WorkerSpec:
    """What one generator process does."""

    label: str
    names: list[str]
    first_index: int  # for spreading source addresses
    port: int
    mode: str = "count"  # "count" or "sample"
    batch_s: float = 0.0
    send: SendPlan | None = None
    rcvbuf: int | None = None
    login_timeout: float = 30.0


@dataclasses.dataclass
class Handle:
    """The main process's end of one worker."""

    spec: WorkerSpec
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection


def message(sender: int, seq: int, size: int) -> bytes:
    """One chat line carrying a token; the send time is stamped as late as possible."""
    head = f"#T:{sender}:{seq}:{time.monotonic_ns()}:"
    pad = size - len(head)
    return (head + "x" * pad if pad > 0 else head).encode() + b"\n"


def login_all(
    names: list[str], first_index: int, port: int, rcvbuf: int | None, timeout: float
) -> list[socket.socket]:
    """Connect every user, send all names, then wait for each welcome.

    Names are sent without waiting for the prompt (the server reads them in
    order anyway), so a few hundred users log in in well under a second.
    """
    socks: list[socket.socket] = []
    for offset, name in enumerate(names):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source_ip(first_index + offset), 0))
        sock.settimeout(timeout)
        sock.connect((HOST, port))
        sock.sendall(name.encode() + b"\n")
        socks.append(sock)
    deadline = time.monotonic() + timeout
    for sock, name in zip(socks, names, strict=True):
        want = f"Welcome, {name}!".encode()
        seen = b""
        while want not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{name} was not welcomed within {timeout}s: {seen[-200:]!r}")
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                raise BenchError(f"{name}: server closed during login: {seen[-200:]!r}")
            seen = seen[-4096:] + data
        sock.setblocking(False)
    return socks


def _drain_preamble(socks: list[socket.socket]) -> None:
    """Discard what arrived before the start (join notices): it carries no token."""
    for sock in socks:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while sock.recv(RECV_SIZE):
                pass


def run_worker(spec: WorkerSpec, conn: multiprocessing.connection.Connection) -> None:
    """Body of one generator process; talks to the main process over `conn`."""
    try:
        raise_nofile()
        socks = login_all(spec.names, spec.first_index, spec.port, spec.rcvbuf, spec.login_timeout)
    except Exception as exc:
        conn.send(("error", f"{spec.label}: {exc}"))
        return
    conn.send(("ready", len(socks)))
    command = conn.recv()
    if command[0] != "go":
        return
    _drain_preamble(socks)
    conn.send(("result", _loop(spec, socks, conn, int(command[1]))))


def _loop(
    spec: WorkerSpec,
    socks: list[socket.socket],
    conn: multiprocessing.connection.Connection,
    t0: int,
) -> dict[str, Any]:
    sample = spec.mode == "sample"
    n = len(socks)
    by_fd = {sock.fileno(): i for i, sock in enumerate(socks)}
    counts = [0] * n
    tails = [b""] * n
    partial = [b""] * n
    last_arrival = [0] * n
    max_gap = [0] * n
    max_gap_at = [0] * n
    closed = [False] * n
    latencies = array("q")
    first_ns = 0
    last_ns = 0

    poller = select.epoll()
    for sock in socks:
        poller.register(sock.fileno(), select.EPOLLIN)
    pipe_fd = conn.fileno()
    poller.register(pipe_fd, select.EPOLLIN)

    plan = spec.send
    seq = 0
    interval_ns = int(1e9 / plan.rate) if plan else 0
    total_to_send = plan.count if plan else 0
    max_lag_ns = 0
    send_errors = 0
    sending = plan is not None
    target: int | None = None
    deadline: int | None = None

    # Wait for t0 so every process starts together.
    while time.monotonic_ns() < t0:
        time.sleep(min(0.01, (t0 - time.monotonic_ns()) / 1e9 + 1e-4))
    cpu0 = process_cpu()
    start = time.monotonic_ns()

    while True:
        now = time.monotonic_ns()
        if sending:
            assert plan is not None
            while seq < total_to_send and t0 + seq * interval_ns <= now:
                lag = now - (t0 + seq * interval_ns)
                if lag > max_lag_ns:
                    max_lag_ns = lag
                sock = socks[seq % n]
                try:
                    sock.send(message(seq % n, seq, plan.size))
                except (BlockingIOError, InterruptedError, ConnectionError):
                    send_errors += 1
                seq += 1
                now = time.monotonic_ns()
            if seq >= total_to_send:
                sending = False
                conn.send(("sent", seq, max_lag_ns / 1e6, send_errors))
        if sending:
            timeout = max(0.0, (t0 + seq * interval_ns - now) / 1e9)
        elif deadline is not None:
            timeout = max(0.0, min(0.05, (deadline - now) / 1e9))
        else:
            timeout = 0.05
        events = poller.poll(timeout)
        for fd, _ in events:
            if fd == pipe_fd:
                command = conn.recv()
                if command[0] == "expect":
                    target, deadline = int(command[1]), int(command[2])
                elif command[0] == "stop":
                    deadline = 0
                continue
            i = by_fd[fd]
            try:
                data = socks[i].recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                closed[i] = True
                poller.unregister(fd)
                continue
            arrived = time.monotonic_ns()
            if sample:
                lines = (partial[i] + data).split(b"\r\n")
                partial[i] = lines.pop()
                got = 0
                for line in lines:
                    at = line.find(MARKER)
                    if at < 0:
                        continue
                    fields = line[at + len(MARKER) :].split(b":", 3)
                    latencies.append(arrived - int(fields[2]))
                    got += 1
                if not got:
                    continue
            else:
                chunk = tails[i] + data
                got = chunk.count(MARKER)
                tails[i] = chunk[-_TAIL:]
                if not got:
                    continue
            counts[i] += got
            if last_arrival[i]:
                gap = arrived - last_arrival[i]
                if gap > max_gap[i]:
                    max_gap[i] = gap
                    max_gap_at[i] = arrived - t0
            last_arrival[i] = arrived
            if not first_ns:
                first_ns = arrived
            last_ns = arrived
        now = time.monotonic_ns()
        if target is not None and all(c >= target or closed[i] for i, c in enumerate(counts)):
            break
        if deadline is not None and now >= deadline:
            break
        if spec.batch_s and not sending:
            time.sleep(spec.batch_s)

    cpu = process_cpu() - cpu0
    wall = (time.monotonic_ns() - start) / 1e9
    for sock in socks:
        sock.close()
    return {
        "label": spec.label,
        "users": n,
        "received": sum(counts),
        "per_socket_min": min(counts) if counts else 0,
        "closed": sum(closed),
        "cpu": cpu,
        "wall": wall,
        "first_ns": first_ns,
        "last_ns": last_ns,
        "latencies": latencies.tobytes() if sample else b"",
        "max_gap_ns": max(max_gap) if max_gap else 0,
        "max_gap_at_ns": max_gap_at[max_gap.index(max(max_gap))] if max_gap else 0,
        "sent": seq,
        "max_lag_ms": max_lag_ns / 1e6,
        "send_errors": send_errors,
    }


def start(specs: list[WorkerSpec]) -> list[Handle]:
    """Fork one process per spec (fork: the main process has no threads or loop)."""
    context = multiprocessing.get_context("fork")
    handles = []
    for spec in specs:
        parent, child = context.Pipe()
        process = context.Process(target=run_worker, args=(spec, child), daemon=True)
        process.start()
        child.close()
        handles.append(Handle(spec, process, parent))
    return handles


def wait_for(
    handles: list[Handle],
    kind: str,
    timeout: float,
    tick: Callable[[], None] | None = None,
) -> list[tuple[Any, ...]]:
    """One message of `kind` from each handle, polling `tick` meanwhile (RSS sampling)."""
    pending = {id(h): h for h in handles}
    got: dict[int, tuple[Any, ...]] = {}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            labels = ", ".join(h.spec.label for h in pending.values())
            raise BenchError(f"timed out waiting for {kind!r} from {labels}")
        ready = multiprocessing.connection.wait([h.conn for h in pending.values()], 0.05)
        for conn in ready:
            handle = next(h for h in pending.values() if h.conn is conn)
            try:
                msg = conn.recv()
            except EOFError:
                raise BenchError(f"{handle.spec.label} exited unexpectedly") from None
            if msg[0] == "error":
                raise BenchError(msg[1])
            if msg[0] != kind:
                raise BenchError(f"{handle.spec.label}: expected {kind!r}, got {msg[0]!r}")
            got[id(handle)] = msg
            del pending[id(handle)]
        if tick is not None:
            tick()
    return [got[id(h)] for h in handles]


def broadcast(handles: list[Handle], message: tuple[Any, ...]) -> None:
    for handle in handles:
        with contextlib.suppress(OSError):
            handle.conn.send(message)


def stop_all(handles: list[Handle]) -> None:
    """Reap every worker; kill any that did not finish (only our own children)."""
    for handle in handles:
        handle.process.join(5)
        if handle.process.is_alive():
            handle.process.kill()
            handle.process.join(5)
        handle.conn.close()


def latencies_ms(results: list[dict[str, Any]]) -> list[float]:
    values = array("q")
    for result in results:
        values.frombytes(result["latencies"])
    return [v / 1e6 for v in values]


def split(items: list[str], parts: int) -> list[list[str]]:
    """`items` in `parts` nearly equal, contiguous slices (none empty)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, at = [], 0
    for p in range(parts):
        take = size + (1 if p < extra else 0)
        out.append(items[at : at + take])
        at += take
    return out


__all__ = [
    "MARKER",
    "Handle",
    "SendPlan",
    "WorkerSpec",
    "broadcast",
    "latencies_ms",
    "split",
    "start",
    "stop_all",
    "wait_for",
]
