"""The tinynn course on The Littlest JupyterHub (TLJH): copy this file to
``/opt/tljh/config/jupyterhub_config.d/tinynn.py`` and run ``sudo tljh-config reload``.

TLJH loads it after its own configuration. Beforehand, as root, once::

    sudo -E /opt/tljh/user/bin/pip install "tinynn[course] @ git+<your copy of the repository>"
    sudo git clone <your copy of the repository> /srv/tinynn/repo
    sudo /opt/tljh/user/bin/python -m tinynn student /srv/tinynn/repo/notebooks --out /srv/tinynn/course
    sudo TINYNN_DATA_DIR=/srv/tinynn/data /opt/tljh/user/bin/python -m tinynn data

TLJH runs each student as the system user ``jupyter-<name>`` with the user environment
``/opt/tljh/user``; the rest is ``jupyterhub_config.py``'s setup. Set the memory and CPU limits
with ``sudo tljh-config set limits.memory 1G`` and ``sudo tljh-config set limits.cpu 1``.
"""
c = get_config()  # noqa: F821 (provided by JupyterHub)

USER_ENV = "/opt/tljh/user/bin"
c.Spawner.cmd = [f"{USER_ENV}/python", "/srv/tinynn/repo/notebooks/hub/course_files.py",
                 "/srv/tinynn/course", "~/tinynn", "--", f"{USER_ENV}/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab/tree/tinynn"
c.Spawner.environment = {"TINYNN_DATA_DIR": "/srv/tinynn/data", "OPENBLAS_NUM_THREADS": "1",
                         "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
