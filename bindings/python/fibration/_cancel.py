"""A progress callback for one long C call that Ctrl-C can stop.

While the library runs, Python cannot raise KeyboardInterrupt: its signal
handler waits for the call to return, which for a budget can be minutes.
The library calls its progress callback (fib_progress_fn) often, and a
ctypes callback runs Python code, but an exception cannot cross back into
C. So, for the duration of the call, SIGINT only sets a flag; the callback
returns "cancel" when the flag is set (the library then returns
FIB_E_CANCELLED and makes nothing), and KeyboardInterrupt is raised once
the call has returned. The same path carries an exception of the user's
progress function, and its wish to cancel.
"""
import signal
import threading

from . import _ffi


class CancellableCall:
    """with CancellableCall(progress) as call: pass call.callback as the
    options' progress, make the C call, then call.raise_pending() before
    checking its status.

    progress(done, total), optional, is told every step and may return True
    to cancel (the call then fails with FIB_E_CANCELLED, as for
    Graph.color). Repeated reports of the same step (the library's frequent
    cancel checks) reach it once."""

    def __init__(self, progress=None):
        self._progress = progress
        self._last = None
        self._raised = []
        self._interrupted = False
        self._previous = None
        self.callback = _ffi.fib_progress_fn(self._report)

    def _report(self, user, done, total):
        try:
            if self._interrupted or self._raised:
                return 1
            if self._progress is not None and (done, total) != self._last:
                self._last = (done, total)
                if self._progress(done, total):
                    return 1
            return 0
        except BaseException as e:  # noqa: B902 - raised by raise_pending
            self._raised.append(e)
            return 1

    def _on_sigint(self, signum, frame):
        self._interrupted = True

    def __enter__(self):
        # Only the main thread may set handlers, and only the default one is
        # replaced: a program's own SIGINT handler keeps its meaning.
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False

    def raise_pending(self):
        """Raises what happened during the call: KeyboardInterrupt for a
        Ctrl-C, or the progress function's own exception."""
        if self._interrupted:
            raise KeyboardInterrupt
        if self._raised:
            raise self._raised[0]
