"""Command line and process life: flags and .env -> Config -> run until a signal.

Flags exist for the settings an operator changes on the command line; every
setting is also an environment variable (or a line in .env), and `--help`
lists them all with their defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from dotenv import load_dotenv

from gochat import __version__
from gochat.checks import check_config
from gochat.config import Config, ConfigError, settings
from gochat.errors import StartupError
from gochat.logs import setup_logging
from gochat.server import ChatServer

log = logging.getLogger("gochat")


def build_parser() -> argparse.ArgumentParser:
    lines = ["settings (environment variables or .env; flags override them):"]
    for f, default in settings():
        lines.append(f"  {f.metadata['env']:<30} {f.metadata['help']} (default: {default})")
    parser = argparse.ArgumentParser(
        prog="gochat",
        description="A chat daemon for nc, telnet, socat and openssl s_client users.",
        epilog="\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gochat {__version__}")
    parser.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env)")
    parser.add_argument(
        "--print-env",
        action="store_true",
        help="print every setting as a commented .env template and exit",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="check settings, TLS files and the database, print what would run, exit 0 or 2",
    )
    for f, default in settings():
        flag = f.metadata["flag"]
        if flag:
            parser.add_argument(
                flag,
                dest=f.name,
                default=None,
                metavar=f.metadata["env"],
                help=f"{f.metadata['help']} (default: {default})",
            )
    return parser


def load_config(argv: Sequence[str] | None = None) -> Config:
    """Parse flags, read .env (never overriding the real environment), validate."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.print_env:
        print(env_template(), end="")
        parser.exit(0)
    load_dotenv(args.env_file, override=False)
    own = {"env_file", "print_env", "check_config"}
    overrides = {k: v for k, v in vars(args).items() if k not in own}
    try:
        config = Config.from_env(os.environ, overrides)
    except ConfigError as exc:
        parser.exit(2, f"gochat: invalid setting: {exc}\n")
        raise AssertionError("unreachable") from exc
    if args.check_config:
        parser.exit(check_config(config))
    return config


def env_template() -> str:
    """Every setting, commented out at its default: what .env.example holds."""
    lines = [
        "# gochat settings. Copy to .env and uncomment what you change.",
        "# Real environment variables win over this file; flags win over both.",
    ]
    for f, default in settings():
        lines.append("")
        lines.append(f"# {f.metadata['help']}")
        lines.append(f"#{f.metadata['env']}={default}")
    return "\n".join(lines) + "\n"


async def serve(config: Config) -> int:
    """Run until SIGINT/SIGTERM; a second signal exits at once. SIGHUP reloads TLS.

    Without a SIGHUP handler the default action killed the daemon at once (exit
    129): no goodbye, no log line, the store's queued writes lost.
    """
    server = ChatServer(config)
    try:
        await server.start()
    except StartupError as exc:
        log.error("%s", exc)
        return 2
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s received: shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    if hasattr(signal, "SIGHUP"):  # not on Windows
        loop.add_signal_handler(signal.SIGHUP, server.reload)
    await stop.wait()
    await server.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    config = load_config(argv)
    setup_logging(config.log_level, config.log_format)
    if config.event_loop == "asyncio":
        return asyncio.run(serve(config))
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]  # typed when installed
    except ImportError:
        if config.event_loop == "uvloop":
            print("gochat: GOCHAT_EVENT_LOOP=uvloop, but uvloop is not installed", file=sys.stderr)
            return 2
        return asyncio.run(serve(config))
    log.info("using uvloop %s", getattr(uvloop, "__version__", "?"))
    code: int = uvloop.run(serve(config))
    return code


if __name__ == "__main__":
    sys.exit(main())
