"""spheres.interrupts.deferred_interrupts: a SIGINT inside the block surfaces after it, never in it."""

import os
import signal
import threading

import pytest

from spheres.interrupts import deferred_interrupts


def test_sigint_inside_the_block_is_raised_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("finished")              # the block is not cut
    assert done == ["finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # handler restored


def test_no_signal_no_exception_and_outside_main_thread_unchanged():
    with deferred_interrupts():
        pass
    out = []

    def worker():
        with deferred_interrupts():
            out.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert out == [signal.default_int_handler]


def test_exception_in_block_propagates_and_restores_the_handler():
    with pytest.raises(RuntimeError):
        with deferred_interrupts():
            raise RuntimeError("boom")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
