"""A one-line progress display on stderr, shown only when stderr is a terminal.

Nothing is written for the first ``delay`` seconds, so quick checks stay silent; after
that a spinner with the current step and the elapsed time is redrawn in place, and
erased when the work ends. Piped or redirected stderr (CI logs) never sees it.
"""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["Progress"]

_FRAMES = "|/-\\"


class Progress:
    """``with Progress() as p: p.update("step"); ...`` -- a spinner after ``delay`` seconds."""

    def __init__(self, stream=None, *, enabled: bool | None = None, delay: float = 0.5,
                 interval: float = 0.1):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.delay, self.interval = delay, interval
        self._text = ""
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = None
        self._drawn = False
        self._lock = threading.Lock()

    def __enter__(self) -> "Progress":
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="gradcheck-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, text: str) -> None:
        self._text = text

    def echo(self, line: str, stream=None) -> None:
        """Print ``line`` (to stdout by default) without tearing the progress line."""
        stream = stream if stream is not None else sys.stdout
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False
            stream.write(line + "\n")
            stream.flush()

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            with self._lock:
                if self._drawn:
                    self.stream.write("\r\x1b[K")
                    self.stream.flush()

    def _run(self) -> None:
        frame = 0
        while not self._stop.wait(self.interval):
            elapsed = time.monotonic() - self._t0
            if elapsed < self.delay:
                continue
            with self._lock:
                self.stream.write(f"\r\x1b[K{_FRAMES[frame % len(_FRAMES)]} {self._text} "
                                  f"({elapsed:.1f} s)")
                self.stream.flush()
                self._drawn = True
            frame += 1
