"""compress(progress=, verbose=) and Ctrl-C during compress(budget=): the
library's progress callback reaches Python, can cancel, and a SIGINT stops
a budget at the library's next check instead of when the call returns."""

import os
import signal

import pytest

torch = pytest.importorskip("torch")

import fibration  # noqa: E402
import fibration.torch as ft  # noqa: E402
from test_budget import mlp  # noqa: E402


class Recorder:
    def __init__(self, stop_at=None):
        self.calls = []
        self.stop_at = stop_at

    def __call__(self, done, total):
        self.calls.append((done, total))
        return self.stop_at is not None and len(self.calls) >= self.stop_at


@pytest.mark.parametrize("budget", [None, 0.4])
def test_progress_counts_up_to_its_total(budget):
    seen = Recorder()
    ft.compress(mlp(), torch.randn(8, 12), budget=budget, progress=seen)
    assert len(seen.calls) >= 2
    done = [d for d, _ in seen.calls]
    assert done == sorted(done) and all(0 <= d <= t for d, t in seen.calls)
    assert seen.calls[-1][0] == seen.calls[-1][1]


def test_progress_returning_true_cancels_the_budget():
    seen = Recorder(stop_at=2)
    with pytest.raises(fibration.FibrationError) as e:
        ft.compress(mlp(), torch.randn(8, 12), budget=0.4, progress=seen)
    assert e.value.name == "FIB_E_CANCELLED"
    assert len(seen.calls) == 2  # no report after the one that cancelled


def test_progress_exception_reaches_the_caller():
    class Stop(Exception):
        pass

    def fail(done, total):
        raise Stop()
    with pytest.raises(Stop):
        ft.compress(mlp(), torch.randn(8, 12), budget=0.4, progress=fail)


def test_sigint_during_budget_raises_keyboard_interrupt_at_the_next_check():
    """SIGINT sent at the first step: the budget stops at the library's next
    cancel check (no later step is reported), KeyboardInterrupt is raised
    when the call returns, and the usual handler is back afterwards.
    Python's usual handler is installed for the test: a suite started in the
    background (`cmd &`) inherits SIGINT ignored."""
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _interrupt_at_first_step()
    finally:
        signal.signal(signal.SIGINT, outer)


def _interrupt_at_first_step():
    seen = []

    def interrupt_at_first(done, total):
        seen.append(done)
        if len(seen) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return False
    with pytest.raises(KeyboardInterrupt):
        ft.compress(mlp(), torch.randn(8, 12), budget=0.4, progress=interrupt_at_first)
    assert len(seen) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # the library is usable at once, with the same result as before
    a, _ = ft.compress(mlp(), torch.randn(8, 12), budget=0.4)
    b, _ = ft.compress(mlp(), torch.randn(8, 12), budget=0.4)
    x = torch.randn(5, 12)
    assert ft.verify(a, b, x).max_abs == 0


def test_a_program_sigint_handler_is_left_alone():
    """A program that handles SIGINT itself keeps its handler during the
    call (it is neither replaced nor bypassed)."""
    got = []
    previous = signal.signal(signal.SIGINT, lambda s, f: got.append(s))
    try:
        ft.compress(mlp(), torch.randn(8, 12), budget=0.4,
                    progress=lambda d, t: os.kill(os.getpid(), signal.SIGINT) if not got
                    else False)
        assert got == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("budget,word", [(None, "fibers"), (0.4, "budget")])
def test_verbose_prints_every_step(budget, word, capsys):
    ft.compress(mlp(), torch.randn(8, 12), budget=budget, verbose=True)
    out = capsys.readouterr().out
    steps = [line for line in out.splitlines() if line.startswith(word + ": step ")]
    assert len(steps) >= 2
    last = steps[-1].split("step ")[1].split(",")[0].split(" of ")
    assert last[0] == last[1]
