"""`python -m bench <scenario> [options]`: run one scenario (or `all`) against a fresh server.

Each scenario starts its own server so one run's leftovers (history, memory
fragmentation, TIME_WAIT sockets) cannot colour the next one's figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import connect, fanout, idle, slow
from bench.common import REPO, BenchError, ServerOptions, raise_nofile

Runner = Callable[[ServerOptions, argparse.Namespace], dict[str, Any]]
SCENARIOS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Runner, str]] = {
    "fanout": (fanout.add_arguments, fanout.run, "100 users, 4 senders at a fixed rate"),
    "connect": (connect.add_arguments, connect.run, "1000 clients, 50 at a time"),
    "idle": (idle.add_arguments, idle.run, "10,000 logged-in idle connections"),
    "slow": (slow.add_arguments, slow.run, "one reader stalls while 20 others receive"),
}


def common_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter for `-m gochat` (e.g. /tmp/uvenv/bin/python); default: this one",
    )
    group.add_argument(
        "--server-cmd",
        help="full server command instead (its PID must be the server: no shell wrapper), "
        "e.g. '.venv/bin/python -m cProfile -o /tmp/p.out -m gochat'",
    )
    group.add_argument(
        "--uvloop",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the server on uvloop (GOCHAT_EVENT_LOOP=uvloop) or, with --no-uvloop, on "
        "asyncio, and check that it did; without either it runs on its default (auto) and "
        "which loop ran is only reported",
    )
    group.add_argument(
        "--colour",
        "--color",
        action="store_true",
        help="clients get ANSI output (GOCHAT_COLOR=always); default plain",
    )
    group.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the server (repeatable)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before starting the server, wait up to this long for the machine to be idle "
        "(the machine is shared: other load skews every figure)",
    )
    group.add_argument(
        "--db",
        default="fresh",
        help="GOCHAT_DB for the server: 'fresh' (default: a new SQLite file per run in a "
        "temp dir), 'none' (memory only), a path or a postgresql:// URL",
    )
    group.add_argument(
        "--source",
        type=Path,
        default=REPO,
        help="directory holding the gochat package to run (default: this work tree); "
        "e.g. a `git worktree` of an older commit for before/after figures",
    )
    group.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        metavar="DIR",
        help="extra directory on the server's PYTHONPATH (repeatable), e.g. one made by "
        "`pip install --target /tmp/uvloop-only uvloop`: same interpreter, plus uvloop",
    )
    group.add_argument(
        "--py-spy",
        metavar="FILE",
        help="record the server with py-spy from start to shutdown: .svg flamegraph, "
        ".json speedscope, anything else raw collapsed stacks (summarised after the run)",
    )
    parser.add_argument("--out", help="also append each RESULT JSON line to this file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="scenario", required=True)
    for name, (add, _, summary) in SCENARIOS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        add(p)
        common_arguments(p)
    p = sub.add_parser("all", help="every scenario with its defaults (a few minutes)")
    common_arguments(p)
    return parser


def options_from(args: argparse.Namespace) -> ServerOptions:
    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env expects KEY=VALUE, got {item!r}")
        env[key] = value
    return ServerOptions(
        python=args.python,
        server_cmd=args.server_cmd,
        colour=args.colour,
        uvloop=args.uvloop,
        env=env,
        wait_quiet=args.wait_quiet,
        db=args.db,
        source=args.source.resolve(),
        py_spy=args.py_spy,
        pythonpath=args.pythonpath,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    raise_nofile()
    options = options_from(args)
    if args.scenario == "all":
        failed = []
        for name, (add, runner, _) in SCENARIOS.items():
            sub = argparse.ArgumentParser()
            add(sub)
            scenario_args = sub.parse_args([])
            scenario_args.out = args.out
            started = time.monotonic()
            try:
                runner(options, scenario_args)
            except BenchError as exc:
                print(f"{name}: FAILED: {exc}", file=sys.stderr)
                failed.append(name)
            print(f"({name} took {time.monotonic() - started:.1f}s)\n", flush=True)
        return 1 if failed else 0
    try:
        SCENARIOS[args.scenario][1](options, args)
    except BenchError as exc:
        print(f"{args.scenario}: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
