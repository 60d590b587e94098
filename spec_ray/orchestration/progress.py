"""A dependency-free progress line: steps, run-steps per second and ETA.

``Line`` is how every progress line of the project is drawn (a pack's here, a sweep's in
``console``): redrawn in place on a terminal, a line every ``every`` seconds elsewhere.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS."""
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Line:
    """One line redrawn in place on a terminal; elsewhere printed at most every ``every`` seconds,
    and never twice the same. Without a stream it writes to this process's stderr (also after
    unpickling: a Tune callback holding one is saved with the run's config)."""

    def __init__(self, stream: TextIO | None = None, every: float = 10.0, tty_every: float = 0.2) -> None:
        self._stream = stream
        self.tty = self.stream.isatty()
        self.every = tty_every if self.tty else every
        self.last = time.perf_counter()
        self.drawn = ""

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stream": None}

    def due(self, force: bool = False) -> bool:
        """Whether a draw now would show: forced, or ``every`` seconds since the last."""
        return force or time.perf_counter() - self.last >= self.every

    def draw(self, text: str) -> None:
        """Show ``text`` (call when ``due``)."""
        self.last = time.perf_counter()
        if text == self.drawn:
            return
        self.drawn = text
        self.stream.write(("\r" + text + "\033[K") if self.tty else text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End a line redrawn in place."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class Progress:
    """A pack's progress: steps, run-steps per second and ETA, as one ``Line``."""

    def __init__(
        self, total_steps: int, runs: int, start_step: int = 0, stream: TextIO | None = None, every: float = 10.0
    ) -> None:
        self.total, self.runs = total_steps, runs
        self.line = Line(stream, every)
        self.start = time.perf_counter()
        self.first_step = start_step

    def update(self, step: int, force: bool = False) -> None:
        """Report that ``step`` of ``total_steps`` are done."""
        if not self.line.due(force):
            return
        now = time.perf_counter()
        done = step - self.first_step
        rate = done / (now - self.start) if now > self.start else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        width = 24
        filled = int(width * step / max(1, self.total))
        self.line.draw(
            f"[{'#' * filled}{'.' * (width - filled)}] step {step}/{self.total} | "
            f"{rate * self.runs:,.0f} run-steps/s | ETA {clock(eta) if rate > 0 else '?'}"
        )

    def close(self, step: int) -> None:
        """Final line."""
        self.update(step, force=True)
        self.line.close()
