"""The course on a real JupyterHub, five students at once (issue 17).

One test, one hub: JupyterHub with the shipped ``notebooks/hub/jupyterhub_config.py`` (loaded as a
sub-config, then pointed at loopback ports, the dummy authenticator and the simple local-process
spawner with home folders under a temporary folder). Five students then, each in a thread, do
what a browser would: start their server with their own API token, find their copy of the course,
open notebook 01, write an answer, execute every cell in their own kernel through the server's
REST and kernel-websocket API, save it, load MNIST the way notebook 06 does (from the one shared
cache), stop and start their server (a second login), and find their work kept. The teacher
collects the five notebooks from the home folders and grades them with ``python -m tinynn grade``.

Every process the test starts works in its temporary folder, which is how the finalizer finds
them: it stops the hub (which stops the servers and the proxy) and kills anything left. All
requests go to 127.0.0.1, each with a timeout, every wait with a deadline.
"""
import concurrent.futures
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import pytest

requests = pytest.importorskip("requests")
pytest.importorskip("jupyterhub", reason="jupyterhub is not installed (pip install -r "
                                         "requirements.txt)")
websocket = pytest.importorskip("websocket", reason="websocket-client is not installed")

from tinynn.course.classroom import write_student_notebooks  # noqa: E402
from tinynn.datasets import MIRROR_ENV, ensure_mnist  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "notebooks" / "hub" / "jupyterhub_config.py"
NODE_BIN = REPO / ".ci" / "node" / "node_modules" / ".bin"  # where .ci/run installs the proxy
PROXY = shutil.which("configurable-http-proxy",
                     path=os.pathsep.join([str(NODE_BIN), os.environ.get("PATH", "")]))
NOTEBOOK, DATA_NOTEBOOK = "01_tensors_and_dense.ipynb", "06_mnist_mlp.ipynb"
# What each student writes in the exercise: the solution, the notebook's own planted bug, nothing.
ANSWERS = {"ada": "right", "alan": "right", "grace": "right", "edsger": "mean bias", "barbara": None}
TIMEOUT = 60         # seconds for any one request, cell or server start
MB = 2 ** 20

pytestmark = [
    pytest.mark.skipif(PROXY is None, reason="configurable-http-proxy (npm) not found: .ci/run "
                                             "installs it with npm into .ci/node"),
    pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(),
                       reason="needs Linux's /proc to find and measure the servers"),
    pytest.mark.skipif(not os.environ.get(MIRROR_ENV), reason=f"needs {MIRROR_ENV} (a folder "
                       "with mnist.pkl.gz) to build the shared MNIST cache offline"),
]


# ------------------------------------------------------------------------------- processes

def _processes_under(root):
    """PIDs of the processes whose working folder is inside ``root``: the hub, the proxy, the
    servers (in the home folders) and their kernels (in the course folders)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cwd = os.readlink(entry / "cwd") if entry.name.isdigit() else ""
        except OSError:          # gone meanwhile, or not ours
            continue
        if (cwd + os.sep).startswith(f"{root}{os.sep}") and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def _stop(proc, root):
    """Stop the hub the way an operator does (SIGTERM: it stops the servers and the proxy),
    then kill whatever is left. Returns the PIDs that had to be killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline, left = time.monotonic() + 10, _processes_under(root)
    while left and time.monotonic() < deadline:   # servers and kernels exit a moment later
        time.sleep(0.2)
        left = _processes_under(root)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _rollup(pid):
    """The kernel's memory accounting for a process, in MB (RSS, PSS, private = USS, anon)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split()[:2]
        fields[name.rstrip(":")] = int(value) / 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"], "anon": fields["Anonymous"],
            "uss": fields["Private_Clean"] + fields["Private_Dirty"]}


def _peak_rss(pid):
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


# ------------------------------------------------------------------------------- the hub

class Hub:
    """A running hub: its URL, the teacher's (admin service's) token, its folder and process."""

    def __init__(self, root, url, token, proc, cache):
        self.root, self.url, self.token, self.proc, self.cache = root, url, token, proc, cache

    def api(self, method, path, token=None, **kwargs):
        response = requests.request(method, f"{self.url}/hub/api{path}", timeout=TIMEOUT,
                                    headers={"Authorization": f"token {token or self.token}"},
                                    **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def home(self, name):
        return self.root / "home" / name


TEST_CONFIG = """\
c = get_config()
load_subconfig({shipped!r})                  # the example a teacher uses, then the test's hub:
c.JupyterHub.ip, c.JupyterHub.port = "127.0.0.1", {port}
c.JupyterHub.hub_ip, c.JupyterHub.hub_port = "127.0.0.1", {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.JupyterHub.db_url = "sqlite:///{root}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {students!r}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{root}/home/{{username}}"
c.Spawner.start_timeout = c.Spawner.http_timeout = {timeout}
c.Spawner.args.extend({args!r})  # --allow-root where tests run as root (students never are)
c.JupyterHub.services = [{{"name": "teacher", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "teacher", "services": ["teacher"],
                             "scopes": ["admin:users", "admin:servers", "tokens"]}}]
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A JupyterHub on 127.0.0.1 serving the student notebooks, with a shared MNIST cache;
    always stopped, with everything it started."""
    root = tmp_path_factory.mktemp("hub")
    course, cache = root / "course", root / "shared-data"
    write_student_notebooks(REPO / "notebooks", course)   # the teacher, once
    ensure_mnist(cache, progress=False)                     # the teacher, once (from the mirror)
    port, hub_port, proxy_port = _free_ports(3)
    token = uuid.uuid4().hex
    config = root / "test_config.py"
    config.write_text(TEST_CONFIG.format(
        shipped=str(SHIPPED), port=port, hub_port=hub_port, proxy_port=proxy_port, proxy=PROXY,
        root=root, students=set(ANSWERS), timeout=TIMEOUT, token=token,
        args=["--allow-root"] if os.geteuid() == 0 else []))
    # The servers inherit PATH and PYTHONPATH (JupyterHub's Spawner.env_keep): this tinynn.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYNN_", "JUPYTER"))}
    env.update(TINYNN_COURSE=str(course), TINYNN_DATA_DIR=str(cache),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    with open(root / "hub.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)],
                                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    running = Hub(root, f"http://127.0.0.1:{port}", token, proc, cache)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                running.api("GET", "/")
                break
            except requests.RequestException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the hub did not start:\n" + (root / "hub.log").read_text()[-3000:])
                time.sleep(0.2)
        yield running
    finally:
        _stop(proc, root)


# ------------------------------------------------------------------------------- a student

class Student:
    """One student, working through the hub as their browser would, with their own token."""

    def __init__(self, hub, name):
        self.hub, self.name = hub, name
        self.token = hub.api("POST", f"/users/{name}/tokens", json={"note": "test login"})["token"]
        self.base = f"{hub.url}/user/{name}"

    def server(self, method, path, **kwargs):
        response = requests.request(method, f"{self.base}/api{path}", timeout=TIMEOUT,
                                    headers={"Authorization": f"token {self.token}"}, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def start(self):
        """Start their server (as the hub's "Start My Server"); seconds until it answers."""
        start = time.monotonic()
        self.hub.api("POST", f"/users/{self.name}/server", token=self.token)
        while not self.hub.api("GET", f"/users/{self.name}", token=self.token)["servers"] \
                .get("", {}).get("ready"):
            assert time.monotonic() - start < TIMEOUT, f"{self.name}'s server did not start"
            time.sleep(0.1)
        return time.monotonic() - start

    def stop(self):
        self.hub.api("DELETE", f"/users/{self.name}/server", token=self.token)
        start = time.monotonic()
        while self.hub.api("GET", f"/users/{self.name}", token=self.token)["servers"]:
            assert time.monotonic() - start < TIMEOUT, f"{self.name}'s server did not stop"
            time.sleep(0.1)

    def open(self, name):
        model = self.server("GET", f"/contents/tinynn/{name}", params={"content": 1})
        return nbformat.from_dict(model["content"])

    def save(self, name, nb):
        self.server("PUT", f"/contents/tinynn/{name}",
                    json={"type": "notebook", "format": "json", "content": nb})

    def kernel(self, notebook):
        session = self.server("POST", "/sessions", json={
            "path": f"tinynn/{notebook}", "type": "notebook", "kernel": {"name": "python3"}})
        return Kernel(f"{self.base.replace('http', 'ws', 1)}/api/kernels/"
                      f"{session['kernel']['id']}/channels", self.token)


class Kernel:
    """A kernel driven over its websocket (jupyter_server's JSON messages), as JupyterLab does."""

    def __init__(self, url, token):
        self.ws = websocket.create_connection(url, timeout=TIMEOUT,
                                              header=[f"Authorization: token {token}"])
        self.session = uuid.uuid4().hex

    def run(self, code):
        """Execute ``code``; its outputs as nbformat outputs (errors included, not raised)."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": self.session,
                       "username": "", "version": "5.3",
                       "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": False}}))
        outputs, replied, idle = [], False, False
        while not (replied and idle):       # each recv has the websocket's timeout
            msg = json.loads(self.ws.recv())
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            replied |= kind == "execute_reply"
            idle |= kind == "status" and msg["content"]["execution_state"] == "idle"
            if kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append(nbformat.v4.output_from_msg(msg))
        return outputs

    def close(self):
        self.ws.close()


def _text(outputs):
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)


def _answer(nb, teacher_nb, kind):
    """The student's edit of the exercise cell: the solution, the bias averaged instead of
    summed (the notebook's own planted bug), or nothing (None)."""
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                == "answer_dense")
    if kind is not None:
        solution = next(c for c in teacher_nb.cells
                        if c.metadata.get("nbgrader", {}).get("grade_id") == "answer_dense")
        cell.source = solution.source
        if kind == "mean bias":
            cell.source = cell.source.replace('grad.sum(axis=0)', 'grad.mean(axis=0)')
    return cell.source


def _work(student, teacher_nb, data_cell, all_loaded):
    """Everything one student does; returns what the test checks and measures."""
    report = {"first start": student.start()}
    files = {f["name"] for f in student.server("GET", "/contents/tinynn")["content"]}
    report["files"] = files
    nb = student.open(NOTEBOOK)
    report["answer"] = _answer(nb, teacher_nb, ANSWERS[student.name])
    start = time.monotonic()
    kernel = student.kernel(NOTEBOOK)
    try:
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = kernel.run(cell.source)
        student.save(NOTEBOOK, nb)                       # what Ctrl-S does
        report["run"] = time.monotonic() - start
        report["errors"] = [o.ename for c in nb.cells if c.cell_type == "code"
                            for o in c.outputs if o.output_type == "error"]
        # Notebook 06's first data cell, in the same kernel: reads the shared cache.
        report["data"] = _text(kernel.run(data_cell))
        report["where"] = _text(kernel.run(
            "import os\nprint(tn.download.default_data_dir(), os.getpid(), os.getppid())")).split()
        all_loaded.wait(3 * TIMEOUT)                     # measure with all five loaded
        kernel_pid, server_pid = int(report["where"][1]), int(report["where"][2])
        report["kernel"], report["server"] = _rollup(kernel_pid), _rollup(server_pid)
        report["peak"] = _peak_rss(kernel_pid) + _peak_rss(server_pid)
        all_loaded.wait(TIMEOUT)                         # measured: all may go on
    finally:
        kernel.close()
    student.stop()
    report["second start"] = student.start()             # a second login
    report["kept"] = _answer(student.open(NOTEBOOK), teacher_nb, None)
    return report


# ------------------------------------------------------------------------------- the test

def test_five_students_on_a_real_hub(hub, tmp_path, capsys):
    teacher_nb = nbformat.read(REPO / "notebooks" / NOTEBOOK, as_version=4)
    data_cell = nbformat.read(REPO / "notebooks" / DATA_NOTEBOOK, as_version=4).cells[3].source
    assert "load_mnist" in data_cell
    course = sorted(p.name for p in (hub.root / "course").iterdir())
    students = [Student(hub, name) for name in ANSWERS]
    all_loaded = threading.Barrier(len(students))

    def work(student):
        try:
            return _work(student, teacher_nb, data_cell, all_loaded)
        except BaseException:
            all_loaded.abort()      # the others stop waiting for this one
            raise

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(students)) as pool:   # all at once
        reports = dict(zip(ANSWERS, pool.map(work, students)))
    work_seconds = time.monotonic() - start

    for name, report in reports.items():
        assert sorted(report["files"]) == course, name      # their own copy of the course
        assert report["errors"] == [], name    # runs through: the checks report, not raise
        assert "x_train: (60000, 784) float32 values in [0, 1]" in report["data"], name
        assert report["where"][0] == str(hub.cache), name   # the shared cache
        # Shared, not copied: the kernel's own memory is far less than MNIST's 220 MB.
        assert report["kernel"]["anon"] < 150, (name, report["kernel"])
        assert report["kept"] == report["answer"], name      # the second login kept their work
    assert len({r["where"][1] for r in reports.values()}) == 5  # five kernels, one each

    # The teacher collects (notebooks/hub/README.md: one folder per student) and grades.
    submitted = tmp_path / "submitted"
    for name in ANSWERS:
        (submitted / name).mkdir(parents=True)
        shutil.copy(hub.home(name) / "tinynn" / NOTEBOOK, submitted / name)
    grades = tmp_path / "grades.csv"
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "tinynn", "grade", str(submitted), "--source",
                    str(REPO / "notebooks"), "--out", str(grades), "--jobs", "2"],
                   check=True, timeout=300, capture_output=True, env=dict(
                       os.environ, OPENBLAS_NUM_THREADS="1", TINYNN_DATA_DIR=str(hub.cache)))
    grade_seconds = time.monotonic() - start
    with open(grades, newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == sorted(ANSWERS)
    for name, kind in ANSWERS.items():
        assert rows[name]["01_tensors_and_dense:dense"] == ("1" if kind == "right" else "0"), \
            rows[name]
    assert len({rows[name]["total"] for name in ANSWERS}) == 2  # right ones ahead of the others

    # Stopping the hub stops every server, kernel and the proxy: nothing left to kill.
    assert _stop(hub.proc, hub.root) == []

    with capsys.disabled():
        print(f"\n\nJupyterHub, {len(students)} students at once (2 cores): notebook 01 run, "
              f"then notebook 06's data loaded (MB; server + kernel)")
        print(f"{'student':8s} {'start s':>7s} {'01 s':>5s} {'again s':>7s} {'RSS':>5s} {'PSS':>5s} "
              f"{'USS':>5s} {'kernel anon':>11s} {'peak RSS':>8s}")
        totals = dict.fromkeys(("rss", "pss", "uss"), 0.0)
        for name, r in reports.items():
            both = {k: r["kernel"][k] + r["server"][k] for k in totals}
            for k in totals:
                totals[k] += both[k]
            print(f"{name:8s} {r['first start']:7.1f} {r['run']:5.1f} {r['second start']:7.1f} "
                  f"{both['rss']:5.0f} {both['pss']:5.0f} {both['uss']:5.0f} "
                  f"{r['kernel']['anon']:11.0f} {r['peak']:8.0f}")
        print(f"{'total':8s} {'':21s} {totals['rss']:5.0f} {totals['pss']:5.0f} "
              f"{totals['uss']:5.0f}   (PSS counts the shared cache once)")
        print(f"five students' work {work_seconds:.1f} s, grading the five {grade_seconds:.1f} s")
