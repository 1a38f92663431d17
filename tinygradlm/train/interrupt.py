"""Ctrl-C that stops a training run at a clean point, so its saved state is always consistent.

Python turns Ctrl-C (SIGINT) into a ``KeyboardInterrupt`` raised wherever the program happens
to be: in the middle of ``backward()``, half-way through ``optimizer.step()`` (some weights
updated, others not), or between two files of a checkpoint.  A state saved from there would
not be the state of any iteration, and ``--resume`` could not continue exactly.

``GracefulStop`` replaces that for the duration of a run:

* the first Ctrl-C only *asks* to stop: the loop finishes the update it is in (never half of
  one), saves the state, and then exits -- unless it is in an evaluation, which has no effect on
  training and is abandoned at once (``interruptible``); the state then says the evaluation of
  that iteration is still to be done;
* a second Ctrl-C stops at once without saving: the last state saved on disk stays as it was
  (states are written beside it and renamed into place, ``checkpoint.save_state``).
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading


class GracefulStop:
    """``with GracefulStop() as stop:`` -- the first Ctrl-C sets ``stop.requested``, the
    second raises KeyboardInterrupt (``stop.forced``).  Outside the main thread, where Python
    delivers no signals, it does nothing."""

    def __init__(self):
        self.requested = False          # Ctrl-C pressed once: stop at the next clean point
        self.forced = False             # pressed again: stop now, do not save
        self.abandoned = False          # an evaluation was cut short by the first Ctrl-C
        self._interruptible = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False

    def _on_sigint(self, signum, frame):
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        if self._interruptible:
            self.abandoned = True
            raise KeyboardInterrupt
        print("\nCtrl-C: finishing this iteration, then saving the training state "
              "(press Ctrl-C again to quit without saving)", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def interruptible(self):
        """A block the first Ctrl-C may cut short (it raises KeyboardInterrupt there)."""
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False
