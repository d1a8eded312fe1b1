"""Test-session set-up shared by unit tests and notebooks (nbval runs notebook kernels as
subprocesses that inherit this environment)."""
import os
import signal
from pathlib import Path

import pytest

# On machines without internet the MNIST cache is seeded from a local mirror: the course's
# shared data folder beside the repository, when it exists and nothing else was chosen.
_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if "TINYNN_DATA_MIRROR" not in os.environ and _shared.is_dir():
    os.environ["TINYNN_DATA_MIRROR"] = str(_shared)


@pytest.fixture(autouse=True)
def _ctrl_c_handler_left_as_found():
    """A test that leaves another Ctrl-C (SIGINT) handler behind changes how every later test
    on the same worker reacts to an interrupt: restore it, and fail the test that did it."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        pytest.fail(f"the test left the SIGINT handler {after!r} (it was {before!r})")
