"""What every scenario shares: the server subprocess, /proc readings, statistics, output.

Everything here talks only to 127.0.0.0/8 and every wait has a deadline, so a
broken server makes a scenario fail with a message instead of hanging.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
HOST = "127.0.0.1"

# Every Linux loopback address answers; spreading clients over 253 of them
# gives each its own ephemeral-port range and its own per-IP bucket.
SOURCE_IPS = tuple(f"127.0.0.{n}" for n in range(2, 255))


_PROBLEM_RE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b.*")
_ADDRESS_RE = re.compile(r"\b[\w-]*@?127\.\d+\.\d+\.\d+\b|\b[a-z]\d{4,6}\b")


class BenchError(RuntimeError):
    """The benchmark cannot go on (server did not start, clients could not log in...)."""


def source_ip(index: int) -> str:
    """The loopback source address for client number `index` (round robin)."""
    return SOURCE_IPS[index % len(SOURCE_IPS)]


def raise_nofile() -> tuple[int, int]:
    """Lift this process's open-file soft limit to the hard limit; return (soft, hard).

    Used in the generator and (via preexec_fn) in the server: the `idle`
    scenario needs one descriptor per connection on each side.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def self_signed_cert(directory: Path) -> tuple[str, str]:
    """A throwaway certificate and key for 127.0.0.1, made with the openssl command."""
    cert, key = directory / "server.crt", directory / "server.key"
    if not cert.exists():
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
                *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
        )
    return str(cert), str(key)


# -- /proc readings ------------------------------------------------------------


def proc_cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of `pid` in seconds: user = Python, system = mostly send/recv."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces; fields after ')' are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` in seconds (children not included)."""
    return sum(proc_cpu_split(pid))


def proc_rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        return 0
    return 0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat.

    With 2 cores shared by the server and the generator, the machine being
    busy is as important a caveat as the generator being busy.
    """
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return float(total - idle), float(total)


def machine_busy_cores(before: tuple[float, float], after: tuple[float, float]) -> float:
    """How many cores were busy on average between two `machine_cpu` readings."""
    busy = after[0] - before[0]
    total = after[1] - before[1]
    if total <= 0:
        return 0.0
    return busy / total * (os.cpu_count() or 1)


def background_load(seconds: float = 0.5) -> float:
    """Cores already busy before the server starts: someone else's load skews every figure."""
    before = machine_cpu()
    time.sleep(seconds)
    return machine_busy_cores(before, machine_cpu())


def background_note(cores: float) -> str | None:
    if cores >= 0.2:
        return (
            f"WARNING: {cores:.2f} cores were busy before the server started (another "
            "process): figures are skewed, rerun on a quiet machine"
        )
    return None


def process_cpu() -> float:
    """This process's user+system CPU seconds (for the generator's own load)."""
    return time.process_time()


# -- statistics ----------------------------------------------------------------


def percentiles(values: Sequence[float], points: Iterable[float] = (50, 90, 99)) -> dict[str, Any]:
    """Nearest-rank percentiles plus max and count; None when there is no sample."""
    ordered = sorted(values)
    out: dict[str, Any] = {}
    for point in points:
        key = f"p{point:g}"
        if not ordered:
            out[key] = None
            continue
        rank = max(1, min(len(ordered), round(point / 100 * len(ordered) + 0.5)))
        out[key] = ordered[rank - 1]
    out["max"] = ordered[-1] if ordered else None
    out["n"] = len(ordered)
    return out


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} ms"


def fmt_pcts(stats: dict[str, Any]) -> str:
    keys = [k for k in stats if k.startswith("p")] + ["max"]
    return "  ".join(f"{k} {fmt_ms(stats[k])}" for k in keys) + f"  (n={stats['n']})"


# -- the server ----------------------------------------------------------------


@dataclasses.dataclass
class ServerOptions:
    """How to start the server; shared by every scenario (see __main__)."""

    python: str = sys.executable
    server_cmd: str | None = None
    colour: bool = False
    uvloop: bool | None = None  # True: must use it; False: must not; None: just report
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    stop_timeout: float = 30.0
    wait_quiet: float = 0.0  # seconds to wait for other processes' load to go away
    db: str = "fresh"  # GOCHAT_DB: "fresh" = a new SQLite file per run in a temp dir
    source: Path = REPO  # the directory holding the gochat package to run
    py_spy: str | None = None  # record the server with py-spy into this file
    pythonpath: list[str] = dataclasses.field(default_factory=list)  # extra, after source


class Server:
    """`python -m gochat` as a child process on a free loopback port.

    Started with every limit that would distort a load test turned off (rate
    limit, per-IP cap, connection cap), TLS off, logging at WARNING (a log
    line per connection would be measured too), and timeouts longer than any
    run. stderr goes to a file so a chatty server can never block on a pipe,
    and so `slow` can look for "SendQ exceeded".
    """

    def __init__(self, options: ServerOptions, *, tls: bool = False, **env: str) -> None:
        self.options = options
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None
        # Closed in __exit__: the directory must outlive start() for stderr_text().
        self._dir = tempfile.TemporaryDirectory(prefix="gochat-bench-")
        self._log_path = Path(self._dir.name) / "server.log"
        self._log = self._log_path.open("wb")
        self.uses_uvloop: bool | None = None
        self.command: list[str] = []
        self.background_cores = 0.0
        self.spy: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "GOCHAT_HOST": HOST,
                "GOCHAT_PORT": str(self.port),
                "GOCHAT_TLS_CERT": "none",  # TLS off
                "GOCHAT_JSON_PORT": "0",  # no JSON listener: the bench speaks text
                "GOCHAT_RATE_MESSAGES": "0",
                "GOCHAT_MAX_CONN_PER_IP": "0",
                "GOCHAT_MAX_CONNECTIONS": "0",
                "GOCHAT_COLOR": "always" if self.options.colour else "never",
                "GOCHAT_LOG_LEVEL": "WARNING",
                "GOCHAT_IDLE_TIMEOUT": "86400",
                "GOCHAT_NAME_TIMEOUT": "3600",
                "GOCHAT_SHUTDOWN_GRACE": "5",
                # Never the work tree's gochat.db: history from an earlier run
                # would be replayed to every login and skew the figures.
                "GOCHAT_DB": str(Path(self._dir.name) / "bench.db")
                if self.options.db == "fresh"
                else self.options.db,
            }
        )
        env.pop("NO_COLOR", None)
        # The chosen tree's gochat wins, whichever interpreter runs it (it is
        # also the working directory, which `-m` puts first on sys.path).
        env["PYTHONPATH"] = os.pathsep.join(
            p
            for p in (
                str(self.options.source),
                *self.options.pythonpath,
                os.environ.get("PYTHONPATH", ""),
            )
            if p
        )
        if self.options.uvloop is not None:
            env["GOCHAT_EVENT_LOOP"] = "uvloop" if self.options.uvloop else "asyncio"
        if self.tls_port is not None:
            cert, key = self_signed_cert(Path(self._dir.name))
            env.update(GOCHAT_TLS_PORT=str(self.tls_port), GOCHAT_TLS_CERT=cert, GOCHAT_TLS_KEY=key)
        env.update(self.options.env)
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 20.0) -> None:
        self.background_cores = background_load()
        deadline = time.monotonic() + self.options.wait_quiet
        while self.background_cores >= 0.2 and time.monotonic() < deadline:
            self.background_cores = background_load()
        if self.options.server_cmd:
            self.command = shlex.split(self.options.server_cmd)
        else:
            # --env-file /dev/null: a developer's .env must not change the run.
            self.command = [self.options.python, "-m", "gochat", "--env-file", os.devnull]
        self.proc = subprocess.Popen(
            self.command,
            env=self.environment(),
            cwd=self.options.source,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=raise_nofile,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"server exited with {self.proc.returncode} before listening:\n"
                    + self.stderr_text()[-2000:]
                )
            try:
                with socket.create_connection((HOST, self.port), timeout=1.0):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.kill()
                    raise BenchError(
                        f"server did not listen on {HOST}:{self.port} in {timeout}s"
                    ) from None
                time.sleep(0.05)
        self.uses_uvloop = self._uvloop_loaded()
        if self.options.py_spy:
            from bench.pyspy import Recorder

            self.spy = Recorder(self.pid, self.options.py_spy)
        want = self.options.uvloop
        if want is not None and want != self.uses_uvloop:
            self.stop()
            raise BenchError(
                f"--{'' if want else 'no-'}uvloop given but the server "
                f"{'does not use' if want else 'uses'} uvloop "
                "(GOCHAT_EVENT_LOOP was set accordingly: is uvloop importable? --pythonpath)"
            )

    def _uvloop_loaded(self) -> bool:
        """Whether uvloop's extension is mapped into the server: the truth, not a guess."""
        # Give the import a moment: the port opens after the loop is created, so
        # by now uvloop is mapped if it is used at all.
        try:
            maps = Path(f"/proc/{self.pid}/maps").read_text()
        except OSError:
            return False
        return "uvloop" in maps

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid)

    def cpu_split(self) -> tuple[float, float]:
        return proc_cpu_split(self.pid)

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def nofile(self) -> tuple[int, int] | None:
        """The server's open-file limit (soft, hard), read from /proc."""
        try:
            for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
                if line.startswith("Max open files"):
                    parts = line.split()
                    return int(parts[3]), int(parts[4])
        except (OSError, ValueError):
            return None
        return None

    def stderr_text(self) -> str:
        self._log.flush()
        return self._log_path.read_text(errors="replace")

    def log_problems(self) -> dict[str, int]:
        """WARNING/ERROR lines of the server log, counted by message (timestamps dropped).

        A log line per delivery or per connection costs the server CPU, so a
        flood of them is a finding in itself, not just noise.
        """
        counts: dict[str, int] = {}
        for line in self.stderr_text().splitlines():
            match = _PROBLEM_RE.search(line)
            if match:
                key = _ADDRESS_RE.sub("<addr>", match.group(0))[:160]
                counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:5])

    def stop(self) -> int:
        """SIGTERM, wait for the orderly shutdown, return the exit code (SIGKILL if stuck)."""
        assert self.proc is not None
        self._stop_spy()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.options.stop_timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return -9
        return int(self.proc.returncode)

    def _stop_spy(self) -> None:
        """End py-spy before the shutdown, so the profile is of the load, and summarise it."""
        if self.spy is None:
            return
        spy, self.spy = self.spy, None
        spy.stop()
        print(f"py-spy ({spy.format}) profile of the server written to {spy.output}")
        if spy.format == "raw":
            from bench.pyspy import top

            print(top(spy.output))

    def kill(self) -> None:
        self._stop_spy()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def describe(self) -> dict[str, Any]:
        return {
            "server_cmd": " ".join(self.command),
            "uvloop": self.uses_uvloop,
            "colour": self.options.colour,
            "background_load_cores": round(self.background_cores, 2),
            "db": self.options.db,
            "gochat_source": str(self.options.source),
            "gochat_rev": gochat_revision(self.options.source),
        }

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        failed = self.proc is not None and self.proc.returncode not in (0, None)
        if (exc_type is not None or failed) and self.proc is not None:
            tail = self.stderr_text().splitlines()[-15:]
            if tail:
                print("server log (last lines):", *tail, sep="\n  ", file=sys.stderr)
        self.kill()
        self._log.close()
        self._dir.cleanup()


def gochat_revision(source: Path = REPO) -> str:
    """HEAD's short hash, "+dirty" when gochat/ differs from it: which code was measured."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "gochat"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def report(name: str, lines: list[str], result: dict[str, Any], out: str | None = None) -> None:
    """Print the human summary, then one machine-readable `RESULT {...}` line."""
    print(f"== {name} ==")
    problems = result.get("server_log_problems") or {}
    if problems:
        total = sum(problems.values())
        top = "; ".join(f"{n} x {text}" for text, n in list(problems.items())[:3])
        lines = [*lines, f"server logged {total} warnings/errors (most frequent): {top}"]
    note = background_note(result.get("background_load_cores", 0.0))
    for line in [*lines, *([note] if note else [])]:
        print("  " + line)
    payload = json.dumps({"scenario": name, **result}, sort_keys=True)
    print("RESULT " + payload, flush=True)
    if out:
        with open(out, "a", encoding="utf-8") as handle:
            handle.write(payload + "\n")


def saturation_note(cpu_fraction: float, label: str) -> str | None:
    """A warning line when a generator process used ~a whole core: its figures are suspect."""
    if cpu_fraction >= 0.9:
        return (
            f"WARNING: {label} used {cpu_fraction:.0%} of a core: it is saturated, "
            "latency and throughput figures are bounded by the generator, not the server"
        )
    return None
