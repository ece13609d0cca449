"""`slow`: one user stops reading; does everyone else keep getting their messages?

The slow client shrinks its receive buffer (SO_RCVBUF) before connecting,
logs in, and never reads again. One sender then posts `--messages` lines of
`--size` bytes at `--rate` to `general`; `--healthy` other users parse every
line (token send time -> latency) and record the longest gap between two
consecutive deliveries. At a fixed rate the baseline gap is the send interval
(0.5 ms at 2000 msgs/s); anything far above it is the server stalling.

"Dropped" is judged three ways: the slow socket's TCP state leaves
ESTABLISHED while it is still not reading (seen with TCP_INFO, which does not
consume data), reading it afterwards ends in EOF or a reset, and the server
logs "SendQ exceeded".
"""

from __future__ import annotations

import argparse
import socket
import time
from typing import Any

from bench import workers
from bench.common import (
    HOST,
    BenchError,
    Server,
    ServerOptions,
    fmt_pcts,
    machine_busy_cores,
    machine_cpu,
    percentiles,
    report,
    saturation_note,
)
from bench.workers import SendPlan, WorkerSpec

TCP_ESTABLISHED = 1
TCP_STATES = {1: "ESTABLISHED", 7: "CLOSE", 8: "CLOSE_WAIT", 4: "FIN_WAIT1", 5: "FIN_WAIT2"}
SLOW_NAME = "slowpoke"
SLOW_IP = "127.0.1.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--healthy", type=int, default=20, help="reading users (20)")
    parser.add_argument("--messages", type=int, default=20000, help="messages sent (20000)")
    parser.add_argument("--size", type=int, default=200, help="message body bytes (200)")
    parser.add_argument("--rate", type=float, default=2000.0, help="msgs/s (2000)")
    parser.add_argument("--rcvbuf", type=int, default=4096, help="slow client's SO_RCVBUF")
    parser.add_argument("--procs", type=int, default=1, help="processes for healthy users (1)")
    parser.add_argument("--drain", type=float, default=5.0, help="seconds for stragglers")
    parser.add_argument(
        "--hold",
        type=float,
        default=0.0,
        help="seconds the slow client goes on not reading after the others are done, "
        "to see it dropped by GOCHAT_STALL_TIMEOUT (0)",
    )


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state for `sock` (first byte of struct tcp_info)."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0]
    except OSError:
        return 0


def slow_login(port: int, rcvbuf: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((SLOW_IP, 0))
    sock.settimeout(10)
    sock.connect((HOST, port))
    sock.sendall(SLOW_NAME.encode() + b"\n")
    seen = b""
    want = f"Welcome, {SLOW_NAME}!".encode()
    while want not in seen:
        data = sock.recv(4096)
        if not data:
            raise BenchError("slow client: closed during login")
        seen += data
    return sock


def read_to_end(sock: socket.socket, timeout: float) -> tuple[str, int]:
    """Read what is left; how it ended ("eof", "reset", "still open") and bytes read."""
    sock.settimeout(0.5)
    total = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return "reset", total
        except OSError as exc:
            return f"error {exc.errno}", total
        if not data:
            return "eof", total
        total += len(data)
    return "still open", total


def run(options: ServerOptions, args: argparse.Namespace) -> dict[str, Any]:
    names = [f"h{i:04d}" for i in range(args.healthy)]
    with Server(options) as server:
        port = server.port
        slow = slow_login(port, args.rcvbuf)
        rcvbuf = slow.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        specs = [
            WorkerSpec(
                "sender",
                ["sender0"],
                300,
                port,
                "count",
                send=SendPlan(args.rate, args.messages, args.size),
            )
        ]
        offset = 0
        for k, chunk in enumerate(workers.split(names, args.procs)):
            specs.append(WorkerSpec(f"healthy{k}", chunk, offset, port, "sample"))
            offset += len(chunk)
        handles = workers.start(specs)
        dropped_at: list[float] = []
        try:
            workers.wait_for(handles, "ready", 60)
            time.sleep(0.5)
            rss_before = server.rss_kib()
            peak = [rss_before]
            t0 = time.monotonic_ns() + 200_000_000

            def tick() -> None:
                peak[0] = max(peak[0], server.rss_kib())
                if not dropped_at and tcp_state(slow) != TCP_ESTABLISHED:
                    dropped_at.append((time.monotonic_ns() - t0) / 1e9)

            cpu0, machine0 = server.cpu(), machine_cpu()
            workers.broadcast(handles, ("go", t0))
            (_, sent, max_lag_ms, _) = workers.wait_for(
                handles[:1], "sent", args.messages / args.rate + 120, tick
            )[0]
            workers.broadcast(
                handles, ("expect", sent, time.monotonic_ns() + int(args.drain * 1e9))
            )
            results = [m[1] for m in workers.wait_for(handles, "result", args.drain + 60, tick)]
            held_until = time.monotonic() + args.hold
            while not dropped_at and time.monotonic() < held_until:
                tick()
                time.sleep(0.05)  # polling the slow socket's TCP state, which reads nothing
            cpu1, machine1 = server.cpu(), machine_cpu()
            rss_after = server.rss_kib()
            state = tcp_state(slow)
        finally:
            workers.stop_all(handles)
        ending, leftover = read_to_end(slow, 3.0)
        slow.close()
        exit_code = server.stop()
        problems = server.log_problems()
        stderr = server.stderr_text()
        described = server.describe()

    healthy = [r for r in results if r["label"].startswith("healthy")]
    received = sum(r["received"] for r in healthy)
    expected = sent * args.healthy
    lat = percentiles(workers.latencies_ms(healthy))
    worst = max(healthy, key=lambda r: r["max_gap_ns"])
    gap_ms = worst["max_gap_ns"] / 1e6
    gap_at = worst["max_gap_at_ns"] / 1e9
    sendq = "SendQ exceeded" in stderr
    stalled = "stalled for" in stderr  # dropped after GOCHAT_STALL_TIMEOUT of no reading
    dropped = bool(dropped_at) or ending in ("eof", "reset") or sendq or stalled
    sender = next((r for r in results if r["label"] == "sender"), None)
    gen = {r["label"]: r["cpu"] / r["wall"] if r["wall"] else 0.0 for r in results}
    busy = machine_busy_cores(machine0, machine1)
    result: dict[str, Any] = {
        **described,
        "healthy": args.healthy,
        "messages": args.messages,
        "sent": sent,
        "size": args.size,
        "rate": args.rate,
        "sender_max_lag_ms": round(max_lag_ms, 3),
        "slow_rcvbuf": rcvbuf,
        "healthy_deliveries": received,
        "healthy_losses": expected - received,
        "healthy_closed": sum(r["closed"] for r in healthy),
        "longest_gap_ms": round(gap_ms, 3),
        "longest_gap_at_s": round(gap_at, 3),
        "latency_ms": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in lat.items()},
        "slow_dropped": dropped,
        "slow_dropped_at_s": round(dropped_at[0], 3) if dropped_at else None,
        "slow_tcp_state_at_end": TCP_STATES.get(state, str(state)),
        "slow_read_ending": ending,
        "slow_bytes_left": leftover,
        "server_logged_sendq": sendq,
        "server_logged_stall": stalled,
        "sender_closed": bool(sender and sender["closed"]),
        "server_rss_kib": {"before": rss_before, "peak": peak[0], "after": rss_after},
        "server_rss_growth_kib": peak[0] - rss_before,
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "generator_cpu_fraction": {k: round(v, 3) for k, v in gen.items()},
        "machine_busy_cores": round(busy, 2),
        "server_exit": exit_code,
        "server_log_problems": problems,
    }
    lines = [
        f"server: {described['server_cmd']}  uvloop={described['uvloop']}",
        f"sent {sent} x {args.size} B at {args.rate:g}/s to {args.healthy} healthy users + "
        f"1 slow (SO_RCVBUF {rcvbuf}); max sender lag {max_lag_ms:.2f} ms",
        f"healthy: {received}/{expected} delivered, longest gap {gap_ms:.2f} ms "
        f"(at {gap_at:.2f}s), latency {fmt_pcts(lat)}",
        f"slow client dropped: {dropped} (reset seen while not reading: "
        + (f"at {dropped_at[0]:.3f}s" if dropped_at else "no")
        + f"; reading afterwards ended: {ending} after {leftover} B; "
        f"'SendQ exceeded' logged: {sendq}; stall logged: {stalled}; "
        f"sender dropped: {bool(sender and sender['closed'])})",
        f"server RSS {rss_before} -> peak {peak[0]} -> {rss_after} KiB "
        f"(growth {peak[0] - rss_before} KiB)",
        "generator CPU: " + ", ".join(f"{k} {v:.0%}" for k, v in gen.items()),
        f"machine busy {busy:.2f} of 2 cores; server exit code {exit_code}",
    ]
    lines += [n for k, v in gen.items() if (n := saturation_note(v, f"generator {k}"))]
    report("slow", lines, result, args.out)
    return result
