"""Deferring Ctrl-C (SIGINT) over a section that must not be cut in half, such as finalising a
checkpoint: the interrupt is remembered and raised as ``KeyboardInterrupt`` when the section ends,
so the run stops at a consistent state and the CLI exits 130 instead of dying by the signal."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def deferred_interrupts():
    """Hold SIGINT for the duration of the block, then raise ``KeyboardInterrupt`` if one came.

    Only the main thread can install signal handlers; elsewhere (or when SIGINT is not handled by
    Python) the block runs unchanged. A second SIGINT inside the block is remembered too, not
    escalated: the block is expected to be short (a checkpoint write)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None or previous in (signal.SIG_IGN, signal.SIG_DFL):
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt
