"""`python -m bench.floor`: the cost of one loopback `send()` per delivery, without gochat.

Why: the server profile under `fanout` is dominated by `transport.write`,
i.e. by the `send` system call (on loopback the kernel also runs the
receiver's TCP input and wake-up inside the sender's call). This measures
that floor on this machine: a plain loop sending a chat-sized line to N
loopback sockets, CPU seconds per delivered line, for 1, 2, 4 and 8 lines
coalesced into each `send`. If one line per `send` already costs more than
the target, no Python-level tuning of the fan-out loop can reach it; only
fewer sends (coalescing) can.

The receivers run in a child process and read in batches, like the counting
receivers of `fanout`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import select
import socket
import sys
import time

from bench.common import HOST, raise_nofile, source_ip

LINE = "🙂 u00001 [14:03]\r\n  ╰─> #T:0:123:1234567890123:xxxxxxxxxxxxxxxxxx\r\n".encode()


def _drain(port: int, count: int, ready: multiprocessing.synchronize.Event) -> None:
    """Accept `count` connections and read them until they all close."""
    listener = socket.create_server((HOST, port), backlog=count)
    poller = select.epoll()
    socks = {}
    ready.set()
    while len(socks) < count:
        conn, _ = listener.accept()
        conn.setblocking(False)
        socks[conn.fileno()] = conn
        poller.register(conn.fileno(), select.EPOLLIN)
    while socks:
        for fd, _ in poller.poll(0.5):
            try:
                data = socks[fd].recv(1 << 18)
            except BlockingIOError:
                continue
            if not data:
                poller.unregister(fd)
                socks.pop(fd).close()
        time.sleep(0.005)


def measure(sockets: int, lines: int, coalesce: int) -> dict[str, float]:
    port = 0
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    ready = multiprocessing.get_context("fork").Event()
    child = multiprocessing.get_context("fork").Process(
        target=_drain, args=(port, sockets, ready), daemon=True
    )
    child.start()
    ready.wait(10)
    socks = []
    for i in range(sockets):
        sock = socket.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source_ip(i), 0))
        sock.connect((HOST, port))
        socks.append(sock)
    payload = LINE * coalesce
    rounds = lines // coalesce
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        for sock in socks:
            sock.send(payload)
        time.sleep(0)  # give the reader a chance, like a loop iteration would
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    for sock in socks:
        sock.close()
    child.join(30)
    deliveries = rounds * coalesce * sockets
    return {
        "sockets": sockets,
        "coalesce": coalesce,
        "deliveries": deliveries,
        "sends": rounds * sockets,
        "cpu_us_per_delivery": round(cpu / deliveries * 1e6, 3),
        "cpu_us_per_send": round(cpu / (rounds * sockets) * 1e6, 3),
        "wall_s": round(wall, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--lines", type=int, default=4000, help="lines per socket")
    args = parser.parse_args(argv)
    raise_nofile()
    for coalesce in (1, 2, 4, 8):
        result = measure(args.sockets, args.lines, coalesce)
        print(
            f"{coalesce} line(s) per send: {result['cpu_us_per_delivery']} µs CPU per delivery, "
            f"{result['cpu_us_per_send']} µs per send"
        )
        print("RESULT " + json.dumps({"scenario": "floor", **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
