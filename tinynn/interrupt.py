"""Ctrl-C during training: finish the step, then stop (never half a parameter update)."""
import signal
import threading


class HoldCtrlC:
    """A training loop's guard against half-done steps: while ``busy`` is set (in the middle
    of a step), a Ctrl-C (SIGINT) is held; ``release()`` ends the step and then raises it as
    usual. The handler is installed once per ``with`` block, not per step: changing it is a
    system call. Only the main thread receives signals (a notebook cell runs there);
    elsewhere, under a handler Python cannot restore, or where Ctrl-C is ignored (a process
    started in the background of a script inherits SIGINT ignored: nobody can interrupt it that
    way), the guard does nothing."""

    def __init__(self):
        self.busy = self.held = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) not in (None, signal.SIG_IGN):
            self.previous = signal.signal(signal.SIGINT, self._on_ctrl_c)
        return self

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _on_ctrl_c(self, signum, frame):
        if self.busy:
            self.held = True
        else:
            self._interrupt(signum, frame)

    def _interrupt(self, signum, frame):
        if callable(self.previous):
            self.previous(signum, frame)  # the usual handler: raises KeyboardInterrupt
        else:  # SIG_DFL: the default action of SIGINT is to stop the program
            raise KeyboardInterrupt

    def release(self):
        """The step is over: act on a Ctrl-C that arrived during it."""
        self.busy = False
        if self.held:
            self.held = False
            self._interrupt(signal.SIGINT, None)
