"""`fanout`: 100 users in `general`, 4 of them sending at a fixed total rate.

A fixed rate rather than "as fast as possible" because on 2 cores the
generator and the server compete: at a fixed offered load, server CPU per
delivery and latency are comparable between runs and between loop
implementations, while a peak-throughput figure mostly measures who won the
scheduler.

Process layout (documented in README): one process for the senders (they are
recipients too and count their own copies), one for the latency samplers
(default 10 users whose every line is parsed), and `--procs` processes of
counting receivers that only count the token marker and read in batches.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import workers
from bench.common import (
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=100, help="users in the lobby (default 100)")
    parser.add_argument("--senders", type=int, default=4, help="of which send (default 4)")
    parser.add_argument(
        "--samplers", type=int, default=10, help="of which parse every line for latency (10)"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="total msgs/s (default 1000)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending (10)")
    parser.add_argument("--size", type=int, default=48, help="message body bytes (default 48)")
    parser.add_argument(
        "--procs", type=int, default=1, help="processes for the counting receivers (default 1)"
    )
    parser.add_argument(
        "--batch-ms",
        type=float,
        default=5.0,
        help="counting receivers sleep this long between polls (default 5 ms)",
    )
    parser.add_argument(
        "--drain", type=float, default=5.0, help="seconds to wait for stragglers after sending"
    )


def run(options: ServerOptions, args: argparse.Namespace) -> dict[str, Any]:
    users, senders, samplers = args.users, args.senders, args.samplers
    if senders < 1 or users < senders + samplers:
        raise SystemExit("fanout: need --users >= --senders + --samplers and --senders >= 1")
    names = [f"u{i:05d}" for i in range(users)]
    count = int(args.rate * args.duration)
    with Server(options) as server:
        port = server.port
        specs = [
            WorkerSpec(
                "senders",
                names[:senders],
                0,
                port,
                mode="count",
                send=SendPlan(args.rate, count, args.size),
            )
        ]
        if samplers:
            specs.append(
                WorkerSpec("samplers", names[senders : senders + samplers], senders, port, "sample")
            )
        counters = names[senders + samplers :]
        offset = senders + samplers
        for k, chunk in enumerate(workers.split(counters, args.procs) if counters else []):
            specs.append(
                WorkerSpec(f"counters{k}", chunk, offset, port, "count", args.batch_ms / 1000)
            )
            offset += len(chunk)
        handles = workers.start(specs)
        try:
            workers.wait_for(handles, "ready", 120)
            time.sleep(0.5)  # let the join notices arrive; they carry no token
            rss_before = server.rss_kib()
            peak = [rss_before]

            def tick() -> None:
                peak[0] = max(peak[0], server.rss_kib())

            split0, machine0 = server.cpu_split(), machine_cpu()
            t0 = time.monotonic_ns() + 200_000_000
            workers.broadcast(handles, ("go", t0))
            (_, sent, max_lag_ms, send_errors) = workers.wait_for(
                handles[:1], "sent", args.duration + 120, tick
            )[0]
            workers.broadcast(
                handles, ("expect", sent, time.monotonic_ns() + int(args.drain * 1e9))
            )
            results = [m[1] for m in workers.wait_for(handles, "result", args.drain + 60, tick)]
            split1, machine1 = server.cpu_split(), machine_cpu()
            rss_after = server.rss_kib()
        finally:
            workers.stop_all(handles)
        exit_code = server.stop()
        problems = server.log_problems()
        described = server.describe()

    received = sum(r["received"] for r in results)
    expected = sent * users
    last_ns = max(r["last_ns"] for r in results)
    span = max(1e-9, (last_ns - t0) / 1e9)
    user, system = split1[0] - split0[0], split1[1] - split0[1]
    server_cpu = user + system
    lat = percentiles(workers.latencies_ms(results))
    gen = {r["label"]: r["cpu"] / r["wall"] if r["wall"] else 0.0 for r in results}
    busy = machine_busy_cores(machine0, machine1)
    result: dict[str, Any] = {
        **described,
        "users": users,
        "senders": senders,
        "samplers": samplers,
        "rate": args.rate,
        "duration": args.duration,
        "size": args.size,
        "sent": sent,
        "send_errors": send_errors,
        "sender_max_lag_ms": round(max_lag_ms, 3),
        "expected_deliveries": expected,
        "deliveries": received,
        "losses": expected - received,
        "closed_clients": sum(r["closed"] for r in results),
        "deliveries_per_s": round(received / span),
        "latency_ms": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in lat.items()},
        "server_cpu_s": round(server_cpu, 3),
        "server_user_s": round(user, 3),
        "server_sys_s": round(system, 3),
        "server_cpu_us_per_delivery": round(server_cpu / received * 1e6, 3) if received else None,
        "server_cpu_cores": round(server_cpu / span, 3),
        "server_rss_kib": {"before": rss_before, "peak": peak[0], "after": rss_after},
        "generator_cpu_fraction": {k: round(v, 3) for k, v in gen.items()},
        "machine_busy_cores": round(busy, 2),
        "server_exit": exit_code,
        "server_log_problems": problems,
    }
    lines = [
        f"server: {described['server_cmd']}  uvloop={described['uvloop']}  "
        f"colour={described['colour']}",
        f"{users} users, {senders} senders at {args.rate:g} msgs/s for {args.duration:g}s, "
        f"{args.size}-byte bodies: sent {sent} (max sender lag {max_lag_ms:.2f} ms)",
        f"deliveries {received}/{expected}  losses {expected - received}  "
        f"{result['deliveries_per_s']}/s",
        f"latency ({samplers} sampling users): {fmt_pcts(lat)}",
        f"server CPU {server_cpu:.2f}s = {result['server_cpu_us_per_delivery']} µs/delivery "
        f"({result['server_cpu_cores']} cores; user {user:.2f}s, system {system:.2f}s)",
        f"server RSS {rss_before} -> peak {peak[0]} -> {rss_after} KiB",
        "generator CPU: " + ", ".join(f"{k} {v:.0%}" for k, v in gen.items()),
        f"machine busy: {busy:.2f} of 2 cores; server exit code {exit_code}",
    ]
    lines += [n for k, v in gen.items() if (n := saturation_note(v, f"generator {k}"))]
    if busy > 1.85:
        lines.append("WARNING: the machine was saturated: latency includes waiting for a core")
    report("fanout", lines, result, args.out)
    return result
