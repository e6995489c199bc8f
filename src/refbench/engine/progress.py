"""Console feedback while training: a light progress bar on a terminal, log lines otherwise.

The bar is hand-written (one `\\r`-terminated line on stderr) and redraws at most
`max_fps` times a second, so it costs a clock read per step and nothing else. When the
stream is not a terminal (CI, `nohup`, a pipe) or progress is switched off, a compact line
is printed at every logged step instead, which reads well in a log file.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Callable, Mapping, TextIO


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _fmt_loss(loss: float | None) -> str:
    if loss is None or not math.isfinite(loss):
        return "nan"
    return f"{loss:.4f}"


def format_metrics(metrics: Mapping[str, float]) -> str:
    parts = []
    for key, value in metrics.items():
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


class Progress:
    """Progress bar (TTY and enabled) or periodic log lines (otherwise) for one training run.

    `tick(step, ...)` is called after every optimizer step; it only touches the terminal
    when the redraw interval has passed. `loss_fn` is called only on redraw, so reading a
    GPU loss (which synchronises) happens a few times a second at most.
    """

    def __init__(self, total: int, *, enabled: bool = True, stream: TextIO | None = None,
                 max_fps: float = 4.0, width: int = 24) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.bar = bool(enabled and callable(isatty) and isatty())
        self.interval = 1.0 / max_fps
        self.width = width
        self._start = time.monotonic()
        self._next_draw = 0.0
        self._start_step: int | None = None
        self._drawn = False

    # -- bar ------------------------------------------------------------------------------
    def tick(self, step: int, samples_per_step: int, loss_fn: Callable[[], float | None],
             lr: float) -> None:
        """Redraw the bar if it is on and due; cheap otherwise."""
        if not self.bar:
            return
        now = time.monotonic()
        if self._start_step is None:
            self._start_step, self._start = step - 1, now
        if now < self._next_draw and step < self.total:
            return
        self._next_draw = now + self.interval
        done = step - self._start_step
        elapsed = max(now - self._start, 1e-9)
        rate = done * samples_per_step / elapsed
        eta = (self.total - step) * elapsed / max(done, 1)
        filled = int(self.width * step / max(1, self.total))
        bar = "#" * filled + "-" * (self.width - filled)
        line = (f"step {step}/{self.total} [{bar}] loss {_fmt_loss(loss_fn())} lr {lr:.2e} "
                f"{rate:,.1f} samples/s eta {_fmt_duration(eta)}")
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    # -- lines ----------------------------------------------------------------------------
    def log(self, record: Mapping[str, object]) -> None:
        """A logged training step: a line when the bar is off (the bar already shows it)."""
        if self.bar:
            return
        loss = record.get("loss")
        self.stream.write(
            f"step {record['step']}/{self.total} epoch {record['epoch']} "
            f"loss {_fmt_loss(loss if isinstance(loss, float) else None)} "
            f"lr {float(record['lr']):.2e} {float(record['samples_per_s']):,.1f} samples/s\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line that must stay visible (evaluation results, resume notice)."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._next_draw = 0.0

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
