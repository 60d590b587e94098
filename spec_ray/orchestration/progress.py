"""A dependency-free progress line: steps, run-steps per second and ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS."""
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Redraws one line on a terminal; prints a line every ``every`` seconds otherwise."""

    def __init__(
        self, total_steps: int, runs: int, start_step: int = 0, stream: TextIO | None = None, every: float = 10.0
    ) -> None:
        self.total, self.runs = total_steps, runs
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.2 if self.tty else every
        self.start = self.last = time.perf_counter()
        self.first_step = start_step

    def update(self, step: int, force: bool = False) -> None:
        """Report that ``step`` of ``total_steps`` are done."""
        now = time.perf_counter()
        if not force and now - self.last < self.every:
            return
        self.last = now
        done = step - self.first_step
        rate = done / (now - self.start) if now > self.start else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        width = 24
        filled = int(width * step / max(1, self.total))
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] step {step}/{self.total} | "
            f"{rate * self.runs:,.0f} run-steps/s | ETA {clock(eta) if rate > 0 else '?'}"
        )
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self, step: int) -> None:
        """Final line."""
        self.update(step, force=True)
        if self.tty:
            self.stream.write("\n")
