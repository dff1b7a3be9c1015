"""Ctrl-C and SIGTERM during training: stop at the next step boundary, with that step saved."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class StopSignals:
    """While active (`with`), SIGINT (Ctrl-C) and SIGTERM only set `signum`: the loop looks at
    it between steps, saves that step and stops. Handlers go in only in the main thread, and
    the previous ones come back on leaving. A repeated signal while a checkpoint is written
    (`writing`) is ignored; a third one elsewhere stops at once (KeyboardInterrupt), saving
    nothing of the step it cuts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, desc: str, announce: bool = True):
        self.desc, self.announce = desc, announce
        self.signum = 0
        self.count = 0
        self.writing = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                previous = signal.signal(signum, self._handle)
                self._previous[signum] = signal.SIG_DFL if previous is None else previous
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        self.writing += 1
        try:
            yield
        finally:
            self.writing -= 1

    def _say(self, text: str) -> None:
        if self.announce:
            print(f"{self.desc}: {text}", file=sys.stderr, flush=True)

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if not self.signum:
            self.signum = signum
            self._say(f"{name}: stopping after this step, which is then saved as a checkpoint")
        elif self.writing:
            self._say(f"{name}: writing a checkpoint; it finishes first")
        elif self.count >= 3:
            raise KeyboardInterrupt
        else:
            self._say(f"{name}: already stopping; a third signal quits without saving this step")
