"""Sampling the server with py-spy during a scenario, and a text summary of the samples.

py-spy reads the server's memory from outside (`--nonblocking`, no pauses),
so the profile shows the real hot path under the real load; it costs some
CPU of its own on the other core, which the machine-busy figure includes.
`python -m bench.pyspy FILE` prints the top of a profile recorded in py-spy's
"raw" (collapsed stacks) format, so a profile can be read in a terminal and
pasted into a note.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

_FRAME_RE = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def executable() -> str | None:
    """py-spy next to this interpreter (a venv's bin/) or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Recorder:
    """`py-spy record` attached to a PID until `stop()`."""

    def __init__(self, pid: int, output: str, rate: int = 250) -> None:
        exe = executable()
        if exe is None:
            raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
        fmt = {".svg": "flamegraph", ".json": "speedscope"}.get(Path(output).suffix, "raw")
        self.output = output
        self.format = fmt
        self.proc = subprocess.Popen(
            [
                *(exe, "record", "--pid", str(pid), "--output", output),
                *("--format", fmt, "--rate", str(rate), "--nonblocking"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # attaching takes a moment; samples before "go" are idle anyway
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise SystemExit(f"py-spy failed to attach: {err.strip()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()


def _short(frame: str) -> str:
    match = _FRAME_RE.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("/gochat/", "/asyncio/", "/uvloop/", "/lib/python3"):
        at = path.rfind(marker)
        if at >= 0:
            path = path[at + 1 :]
            break
    return f"{match['func']} ({path})"


def top(path: str, limit: int = 25, idle: bool = False) -> str:
    """Self and inclusive sample shares per function, from a raw collapsed-stack file.

    Samples whose leaf is the event loop's wait (epoll/select) are counted as
    idle and left out unless `idle`, so the percentages are of busy time.
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = idle_samples = 0
    for raw in Path(path).read_text().splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        leaf = frames[-1]
        if not idle and leaf.startswith(("select ", "poll ")):
            idle_samples += count
            continue
        total += count
        own[leaf] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no busy samples"
    lines = [f"{total} busy samples ({idle_samples} idle samples left out)", "", "self:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(limit)]
    lines += ["", "inclusive:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(limit)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pyspy", description=__doc__)
    parser.add_argument("file", help="py-spy output in raw (collapsed) format")
    parser.add_argument("--limit", type=int, default=25)
    parser.add_argument("--idle", action="store_true", help="keep event-loop wait samples")
    args = parser.parse_args(argv)
    print(top(args.file, args.limit, args.idle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
