"""What a training stage reports: metrics.jsonl, and progress on stderr.

metrics.jsonl gets one JSON object per logging step or evaluation; a fresh run starts it empty
(rows left by a run killed before its first checkpoint are not kept), a resume drops the rows it
is about to write again. Progress is a tqdm bar on a terminal, else (CI, `make demo > log`) a
plain line every PROGRESS_INTERVAL_S seconds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

from tinybert.paths import write_atomic


class MetricsLog:
    """Append-only JSONL file: one object per logging step or evaluation."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def start_fresh(self) -> None:
        """A run starts from step 0: replace the file with an empty one, so rows of an earlier
        run that left no checkpoint (killed before its first) never mix with this run's."""
        write_atomic(self.path, "")

    def resume_at(self, step: int) -> None:
        """A run resumes from a checkpoint of `step`: drop the rows it is about to write again
        (steps after it, a line cut short by a kill, a `done` row it passes), then mark the
        resume with `{"step": step, "resumed_from": step}`. The file is replaced atomically."""
        kept = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                    continue
                if row["step"] < step or (row["step"] == step and not row.get("done")):
                    kept.append(line)
        kept.append(json.dumps({"step": step, "resumed_from": step}))
        write_atomic(self.path, "\n".join(kept) + "\n")


# Without a terminal on stderr (CI, `make demo > log`), one plain progress line this often.
PROGRESS_INTERVAL_S = 30.0


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Training progress on stderr: a tqdm bar on a terminal; otherwise (a log file, CI) a plain
    line every `interval` seconds (`PROGRESS_INTERVAL_S`): step/total, loss, steps/s, ETA,
    instead of carriage-return redraws."""

    def __init__(
        self,
        total: int,
        initial: int,
        desc: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float | None = None,
    ):
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = sys.stderr if stream is None else stream
        self.interval = PROGRESS_INTERVAL_S if interval is None else interval
        self.bar = None
        if enabled and _isatty(self.stream):
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", file=self.stream)
        self.start = self.last = time.monotonic()
        self.start_step = initial

    def update(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")
            return
        now = time.monotonic()
        if not self.enabled or now - self.last < self.interval:
            return
        self.last = now
        rate = (step - self.start_step) / max(now - self.start, 1e-9)
        eta = _duration((self.total - step) / rate) if rate > 0 else "?"
        print(
            f"{self.desc}: step {step}/{self.total} ({100 * step // self.total}%), "
            f"loss {loss:.4f}, {rate:.2f} steps/s, ETA {eta}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
