"""Test-session set-up shared by unit tests and notebooks (nbval runs notebook kernels as
subprocesses that inherit this environment)."""
import os
from pathlib import Path

# On machines without internet the MNIST cache is seeded from a local mirror: the course's
# shared data folder beside the repository, when it exists and nothing else was chosen.
_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if "TINYNN_DATA_MIRROR" not in os.environ and _shared.is_dir():
    os.environ["TINYNN_DATA_MIRROR"] = str(_shared)
