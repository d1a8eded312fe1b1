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
    """Every test starts with the Ctrl-C (SIGINT) handler the session started with, so no test
    depends on what an earlier one on the same worker left. asyncio (nbclient's kernels, `tinynn
    grade`) puts back Python's default handler, not the one it found: in CI, which starts the
    suite with SIGINT ignored, that alone made the tests' order matter. That is restored quietly;
    a handler of any other kind left behind (a guard, a no-op) is a leak, and fails the test."""
    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        if after not in (signal.default_int_handler, signal.SIG_IGN, signal.SIG_DFL):
            pytest.fail(f"the test left the SIGINT handler {after!r} (it was {before!r})")
