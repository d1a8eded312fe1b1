"""JupyterHub for a tinynn class on one machine: ``jupyterhub -f notebooks/hub/jupyterhub_config.py``.

What it sets up (notebooks/hub/README.md explains each step, TLJH users take ``tljh.py``):

* each student's own copy of the course in ``~/tinynn``, copied at every server start by
  ``course_files.py`` run as the student, which never overwrites a file that is already there;
* one shared, read-only MNIST cache for everyone (``TINYNN_DATA_DIR``): the kernels memory-map
  it, so 30 students hold one 220 MB copy, not 30;
* one BLAS thread per kernel, so that one student's training cannot take every core.

The two folders are prepared once by the teacher (as root)::

    python -m tinynn student notebooks/ --out /srv/tinynn/course
    TINYNN_DATA_DIR=/srv/tinynn/data python -m tinynn data

They can be moved by setting the environment variables below before starting the hub.
Authentication (PAM users here, the default) and HTTPS are the hub's usual settings, not
tinynn's: see the JupyterHub documentation.
"""
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)

COURSE = os.environ.get("TINYNN_COURSE", "/srv/tinynn/course")  # student notebooks, read-only
DATA = os.environ.get("TINYNN_DATA_DIR", "/srv/tinynn/data")    # the MNIST cache, read-only
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent   # the environment with tinynn[course] and jupyterhub

c.Spawner.cmd = [sys.executable, str(HERE / "course_files.py"), COURSE, "~/tinynn", "--",
                 str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab/tree/tinynn"
# Students receive notebooks by the copy step above and the teacher grades with `tinynn grade`
# (README.md), so nbgrader's server extensions (the exchange, formgrader) are not loaded for
# them: each server starts a few seconds sooner and smaller. Drop this to use nbgrader's exchange.
c.Spawner.args = ["--ServerApp.jpserver_extensions=" + repr({
    f"nbgrader.server_extensions.{name}": False
    for name in ("formgrader", "assignment_list", "course_list", "validate_assignment")})]
c.Spawner.environment = {
    "TINYNN_DATA_DIR": DATA,
    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
}
# One student (server + one kernel, MNIST loaded) holds about 0.2 GB of their own, plus their
# share of the one 0.22 GB cache; notebook 06's split() adds a 0.19 GB copy of the training set
# (TEACHING.md, section 7). Spawners that enforce limits (systemd, Docker, Kubernetes) read
# these; the local-process spawner ignores them.
c.Spawner.mem_limit = "1G"
c.Spawner.cpu_limit = 1
# Servers idle for an hour are stopped by jupyterhub-idle-culler, if installed (pip install
# jupyterhub-idle-culler): their notebooks stay, the memory is freed.
