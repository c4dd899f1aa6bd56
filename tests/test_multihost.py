"""Several hosts: one worker per host, as ``--coordinator``, ``--num-processes`` and ``--process-id``
are documented, on two hosts made of Linux network namespaces.

Each host is a network, UTS and mount namespace (``unshare``): its own hostname, resolving to its own
address through a bind-mounted hosts file, one end of a veth pair (10.200.0.1/24 and 10.200.0.2/24,
addresses that exist inside these namespaces only, so no traffic leaves them). The workers are
``python -m aepca`` entered into a host with ``nsenter``. Making namespaces needs root, ``unshare``,
``nsenter`` and ``ip`` (iproute2); without them the namespace tests skip, saying why. The hostname
check and the watch that ends a run whose host is lost are also tested in this process, on any machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BLOCKING_CHILD, float_tolerance, xla_flags

from aepca import distributed
from aepca.cli import EXIT_USAGE

# One worker runs the module, so its runs happen once (pytest-xdist's loadgroup).
pytestmark = pytest.mark.xdist_group("multihost")

SUBNET = "10.200.0"
PORT = 12355
# 3,000 rows x 16 in blocks of 500: 6 blocks, 3 for each process's lane.
ROWS, FEATURES, BLOCK_ROWS = 3000, 16, 500
EPOCHS = 3
TRAINING = ["--block-rows", BLOCK_ROWS, "--epochs", EPOCHS, "--recipe", "classic", "--hidden", 32, "--no-progress"]
RUN_TIMEOUT_S = 300
# A lost host ends the run within this (the bound).
LOST_BOUND_S = 60
SETUP_TIMEOUT_S = 20


# Hosts ---------------------------------------------------------------------------------------------
def _namespaces(pid: int | str) -> dict[str, str]:
    return {kind: os.readlink(f"/proc/{pid}/ns/{kind}") for kind in ("net", "uts", "mnt")}


def namespaces_unavailable() -> str | None:
    """Why two namespace hosts cannot be made here, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (util-linux, iproute2)"
    probe = subprocess.run(["unshare", "--net", "--uts", "--mount", "ip", "link", "set", "lo", "up"],
                           capture_output=True, text=True, timeout=SETUP_TIMEOUT_S)
    if probe.returncode != 0:
        return f"unshare --net --uts --mount failed: {probe.stderr.strip()}"
    return None


needs_namespaces = pytest.mark.skipif(namespaces_unavailable() is not None, reason=str(namespaces_unavailable()))


class Host:
    """One namespace host named ``name``, linked to the other one by ``link`` (if any); ``holder``
    keeps its namespaces alive."""

    def __init__(self, name: str, link: str | None, holder: subprocess.Popen):
        self.name, self.link, self.holder = name, link, holder
        self.workers: list[subprocess.Popen] = []

    def run(self, argv, *, env, stdout, stderr) -> subprocess.Popen:
        """``argv`` started inside this host (its network, hostname and hosts file)."""
        assert _namespaces(self.holder.pid) != _namespaces("self")  # never this machine's own
        worker = subprocess.Popen(
            ["nsenter", "-t", str(self.holder.pid), "--net", "--uts", "--mount", "--", *map(str, argv)],
            env=env, stdout=stdout, stderr=stderr,
        )
        self.workers.append(worker)
        return worker

    def set_link(self, state: str) -> None:
        """Take this host's link ``down`` (the other host stops hearing from it, silently) or ``up``."""
        assert _namespaces(self.holder.pid) != _namespaces("self")
        subprocess.run(["nsenter", "-t", str(self.holder.pid), "--net", "--", "ip", "link", "set", self.link, state],
                       check=True, timeout=SETUP_TIMEOUT_S)

    def close(self) -> None:
        for process in (*self.workers, self.holder):
            if process.poll() is None:
                process.kill()
            process.wait()


def _start_host(folder: Path, name: str, hosts: str, script: str, link: str | None = None) -> Host:
    """A holder process in new namespaces that takes ``name`` as its hostname, resolves names through
    ``hosts`` (a bind-mounted hosts file, seen inside only), brings up loopback, runs ``script``, and
    then waits to be killed. Every command runs inside the namespaces ``unshare`` made."""
    (folder / f"{name}.hosts").write_text(hosts)
    holder = subprocess.Popen(
        ["unshare", "--net", "--uts", "--mount", "sh", "-c",
         f"set -e; hostname {name}; mount --bind {folder / f'{name}.hosts'} /etc/hosts; ip link set lo up; "
         f"{script}; touch {folder / f'{name}.ready'}; exec sleep {RUN_TIMEOUT_S * 4}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    return Host(name, link, holder)


def _wait_ready(folder: Path, *hosts: Host) -> None:
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    for host in hosts:
        while not (folder / f"{host.name}.ready").exists():
            if host.holder.poll() is not None:
                pytest.fail(f"host {host.name} could not be made: {host.holder.stderr.read().strip()}")
            if time.monotonic() > deadline:
                pytest.fail(f"host {host.name} not ready within {SETUP_TIMEOUT_S} s")
            time.sleep(0.05)
        assert _namespaces(host.holder.pid) != _namespaces("self")


@pytest.fixture
def two_hosts(tmp_path):
    """Hosts ``aepca-host-0`` (10.200.0.1) and ``aepca-host-1`` (10.200.0.2), joined by a veth pair."""
    folder = tmp_path / "hosts"
    folder.mkdir()
    names = ("aepca-host-0", "aepca-host-1")
    hosts_file = "127.0.0.1 localhost\n" + "".join(f"{SUBNET}.{i + 1} {name}\n" for i, name in enumerate(names))
    second = _start_host(folder, names[1], hosts_file,
                         # Its end of the link arrives from the first host; then it takes its address.
                         "i=0; until ip link show veth-1 >/dev/null 2>&1; do i=$((i+1)); [ $i -lt 400 ]; sleep 0.05; done; "
                         f"ip addr add {SUBNET}.2/24 dev veth-1; ip link set veth-1 up", link="veth-1")
    hosts = [second]
    try:
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while _namespaces(second.holder.pid) == _namespaces("self"):  # until it has unshared
            assert second.holder.poll() is None and time.monotonic() < deadline, second.holder.stderr.read()
            time.sleep(0.02)
        first = _start_host(folder, names[0], hosts_file,
                            f"ip link add veth-0 type veth peer name veth-1 netns {second.holder.pid}; "
                            f"ip addr add {SUBNET}.1/24 dev veth-0; ip link set veth-0 up", link="veth-0")
        hosts.insert(0, first)
        _wait_ready(folder, first, second)
        yield first, second
    finally:
        for host in hosts:
            host.close()


# Runs ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """3,000 rows x 16 (rank 4 through tanh, plus noise) in a .npy file."""
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((ROWS, 4)) * np.array([3.0, 2.0, 1.0, 0.5])
    rows = np.tanh(latent @ rng.standard_normal((4, FEATURES)) / 2) + 0.05 * rng.standard_normal((ROWS, FEATURES))
    path = tmp_path_factory.mktemp("data") / "rows.npy"
    np.save(path, rows.astype(np.float32))
    return path


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    """``python -m aepca``'s environment: this interpreter's path, JAX, one CPU device, and a
    compilation cache of this module's own (later runs load earlier runs' programs)."""
    env = dict(os.environ)
    env.update(PYTHONPATH=os.pathsep.join(sys.path), KERAS_BACKEND="jax", XLA_FLAGS=xla_flags(),
               AEPCA_COMPILATION_CACHE=str(tmp_path_factory.mktemp("jax-cache")))
    return env


def join_options(index: int) -> list:
    return ["--coordinator", f"{SUBNET}.1:{PORT}", "--num-processes", 2, "--process-id", index]


def wait_all(workers, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    return [worker.wait(timeout=max(0.1, deadline - time.monotonic())) for worker in workers]


def run_on_hosts(hosts, env, folder: Path, argv_of) -> list[str]:
    """``argv_of(i)`` on host ``i``, each to the end; their stderr. Both must succeed."""
    folder.mkdir(parents=True, exist_ok=True)
    workers = []
    for i, host in enumerate(hosts):
        with open(folder / f"err-{i}", "w") as err:
            workers.append(host.run(argv_of(i), env=env, stdout=subprocess.DEVNULL, stderr=err))
    statuses = wait_all(workers, RUN_TIMEOUT_S)
    errors = [(folder / f"err-{i}").read_text() for i in range(len(hosts))]
    assert statuses == [0, 0], [e[-3000:] for e in errors]
    return errors


@pytest.fixture(scope="module")
def two_local_processes(data, cli_env, tmp_path_factory) -> dict:
    """The metrics of ``--processes 2`` on this machine: what the two hosts must reproduce."""
    out = tmp_path_factory.mktemp("local") / "run"
    argv = [sys.executable, "-m", "aepca", "compare", data, "--processes", 2, *TRAINING, "--out", out]
    result = subprocess.run(list(map(str, argv)), capture_output=True, text=True, env=cli_env, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def assert_same_result(got: dict, expected: dict) -> None:
    """The same training to float32 round-off: the same programs on the same batches, each step's
    update rounded once (at most all steps' roundings add up)."""
    steps = EPOCHS * -(-expected["n_train"] // 128)  # the classic recipe's batch of 128, at most
    tolerance = float_tolerance(np.float32, 1.0, steps)
    assert (got["n_train"], got["n_test"]) == (expected["n_train"], expected["n_test"])
    for key in ("loss", "val_loss"):
        assert len(got["autoencoder"]["history"][key]) == EPOCHS
        np.testing.assert_allclose(got["autoencoder"]["history"][key], expected["autoencoder"]["history"][key],
                                   rtol=tolerance, atol=0)
    assert got["autoencoder"]["test_mse"] == pytest.approx(expected["autoencoder"]["test_mse"], rel=tolerance)
    # PCA is float64 throughout: only the order of its sums over blocks may differ.
    assert got["pca"]["test_mse"] == pytest.approx(expected["pca"]["test_mse"], rel=float_tolerance(np.float64, 1.0, ROWS))


# 1. Two hosts train as two local processes -------------------------------------------------------
@pytest.mark.slow
@needs_namespaces
def test_two_hosts_train_as_two_local_processes(two_hosts, data, cli_env, two_local_processes, tmp_path):
    out = tmp_path / "run"
    errors = run_on_hosts(two_hosts, cli_env, tmp_path / "logs",
                          lambda i: [sys.executable, "-m", "aepca", "compare", data, *TRAINING, "--out", out, *join_options(i)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["reading"]["blocks"], metrics["reading"]["processes"]) == (ROWS // BLOCK_ROWS, 2)
    assert_same_result(metrics, two_local_processes)
    for err in errors:
        assert "aepca:" not in err and "Traceback" not in err, err[-3000:]


# 2. A lost host ends the run with one line; the checkpoint resumes --------------------------------
@pytest.mark.slow
@needs_namespaces
@pytest.mark.parametrize("loss", ["killed", "cut off"])
def test_a_lost_host_ends_the_run_in_one_line_and_resume_finishes_it(loss, two_hosts, data, cli_env,
                                                                     two_local_processes, tmp_path):
    """The first host's worker stops after writing epoch 1's checkpoint (it waits for a marker); the
    second, in epoch 2, waits for it. The second host's worker is killed (SIGKILL) or its link cut,
    and the first is let go into epoch 2. Every worker left ends within LOST_BOUND_S with exit
    status 1 and one aepca line, no traceback and no C++ abort; the checkpoint is kept, and
    --resume on both hosts finishes with the uninterrupted result."""
    out, marker, logs = tmp_path / "run", tmp_path / "epoch-1", tmp_path / "logs"
    logs.mkdir()
    compare = ["compare", data, *TRAINING, "--out", out]
    first, second = two_hosts
    with open(logs / "err-0", "w") as err0, open(logs / "err-1", "w") as err1:
        workers = [
            first.run([sys.executable, "-c", BLOCKING_CHILD, marker, *compare, *join_options(0)],
                      env=cli_env, stdout=subprocess.DEVNULL, stderr=err0),
            second.run([sys.executable, "-m", "aepca", *compare, *join_options(1)],
                       env=cli_env, stdout=subprocess.DEVNULL, stderr=err1),
        ]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not marker.exists():
        assert all(w.poll() is None for w in workers), [(logs / f"err-{i}").read_text()[-3000:] for i in range(2)]
        assert time.monotonic() < deadline, "no checkpoint of epoch 1 within the time allowed"
        time.sleep(0.05)
    if loss == "killed":
        workers[1].send_signal(signal.SIGKILL)
        left = workers[:1]
    else:
        second.set_link("down")
        left = workers
    lost_at = time.monotonic()
    marker.with_name(marker.name + ".release").touch()  # the first worker goes on into epoch 2
    statuses = wait_all(left, LOST_BOUND_S)
    assert time.monotonic() - lost_at < LOST_BOUND_S
    assert statuses == [1] * len(left)
    for i in range(len(left)):
        err = (logs / f"err-{i}").read_text()
        lines = [line for line in err.splitlines() if line.strip()]
        assert [line for line in lines if line.startswith("aepca")] == lines[-1:], err[-3000:]
        assert lines[-1].startswith("aepca: error: "), err[-3000:]
        assert "Traceback" not in err and "Check failure" not in err, err[-3000:]
    assert "checkpoint kept in" in (logs / "err-0").read_text()
    assert list(out.glob("checkpoint/*/checkpoint.npz")), "the checkpoint was not kept"
    assert not (out / "metrics.json").exists()

    if loss == "cut off":
        second.set_link("up")
    run_on_hosts(two_hosts, cli_env, tmp_path / "resume-logs",
                 lambda i: [sys.executable, "-m", "aepca", "compare", "--resume", out, *join_options(i)])
    assert_same_result(json.loads((out / "metrics.json").read_text()), two_local_processes)


# 3. A hostname that resolves to loopback is refused before joining ----------------------------------
@needs_namespaces
def test_a_worker_whose_hostname_resolves_to_loopback_stops_with_one_line(data, cli_env, tmp_path):
    folder = tmp_path / "hosts"
    folder.mkdir()
    # As on hosts whose /etc/hosts maps their own name to 127.0.1.1.
    host = _start_host(folder, "aepca-loop", "127.0.0.1 localhost\n127.0.1.1 aepca-loop\n", "true")
    try:
        _wait_ready(folder, host)
        out = tmp_path / "run"
        with open(tmp_path / "err", "w") as err:
            worker = host.run([sys.executable, "-m", "aepca", "compare", data, *TRAINING, "--out", out, *join_options(1)],
                              env=cli_env, stdout=subprocess.DEVNULL, stderr=err)
        status = worker.wait(timeout=RUN_TIMEOUT_S)
    finally:
        host.close()
    err = (tmp_path / "err").read_text()
    assert status == EXIT_USAGE, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("aepca: error: "), err[-3000:]
    assert "'aepca-loop' resolves to 127.0.1.1" in lines[0] and "/etc/hosts" in lines[0]
    assert not out.exists()


# The check itself, on any machine ------------------------------------------------------------------
@pytest.fixture
def hostname_resolving_to(monkeypatch):
    """Make this machine's hostname ``box`` resolve to a given address (others resolve as they do)."""
    resolve = socket.getaddrinfo

    def set_address(address: str):
        monkeypatch.setattr(socket, "gethostname", lambda: "box")
        monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: (
            [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))] if host == "box" else resolve(host, *args, **kwargs)
        ))

    return set_address


def test_a_loopback_hostname_is_refused_for_a_coordinator_elsewhere(hostname_resolving_to):
    hostname_resolving_to("127.0.1.1")
    with pytest.raises(ValueError, match=r"hostname 'box' resolves to 127\.0\.1\.1, a loopback address.*/etc/hosts"):
        distributed.check_reachable_hostname("192.0.2.10:12345")


@pytest.mark.parametrize("coordinator", ["127.0.0.1:12345", "localhost:12345", "[::1]:12345"])
def test_a_loopback_hostname_is_fine_when_every_process_runs_here(hostname_resolving_to, coordinator):
    hostname_resolving_to("127.0.1.1")
    distributed.check_reachable_hostname(coordinator)  # --processes runs its workers so


def test_a_coordinator_that_does_not_resolve_is_named(monkeypatch):
    def resolve(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(ValueError, match="coordinator: its host 'host0' does not resolve"):
        distributed.check_reachable_hostname("host0:12345")


# The watch that ends a run whose host is lost, on any machine ------------------------------------
class FakeCoordinator:
    """The coordinator's key-value store, as JAX's client reaches it; ``reachable=False`` makes
    every call fail, as when its host is gone."""

    def __init__(self):
        self.store: dict[str, str] = {}
        self.reachable = True

    def _check(self):
        if not self.reachable:
            raise RuntimeError("UNAVAILABLE: failed to connect")

    def key_value_set(self, key, value, allow_overwrite=False):
        self._check()
        self.store[key] = value

    def key_value_dir_get(self, prefix):
        self._check()
        return [(key, value) for key, value in self.store.items() if key.startswith(prefix)]


@pytest.fixture
def watch(monkeypatch):
    """``watch(process, count, coordinator)``: a distributed._Watch with short timings whose end is
    recorded (its line) instead of ending the test process."""
    monkeypatch.setattr(distributed, "LOST_AFTER_S", 1.0)
    monkeypatch.setattr(distributed, "WATCH_POLL_S", 0.05)
    ended, watches = [], []

    def end(line):
        ended.append(line)
        for w in watches:
            w._leaving.set()

    monkeypatch.setattr(distributed, "_exit_now", end)

    def make(process, count, coordinator):
        watches.append(distributed._Watch(coordinator, process, count, lambda: "; NOTE"))
        return watches[-1], ended

    yield make
    for w in watches:
        w._leaving.set()


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)


def test_a_process_that_stops_beating_is_lost_and_one_that_left_is_not(watch):
    """Of three processes, process 1 left on its own (at its exit) and process 2 beats for twice the
    time allowed, then stops (its host is gone): process 0's watch ends it naming process 2."""
    coordinator = FakeCoordinator()
    coordinator.key_value_set("aepca/left/1", "")
    _, ended = watch(0, 3, coordinator)
    deadline, beat = time.monotonic() + 2 * distributed.LOST_AFTER_S, 0
    while time.monotonic() < deadline:
        beat += 1
        coordinator.key_value_set("aepca/beat/2", str(beat), allow_overwrite=True)
        time.sleep(0.05)
    assert ended == []  # alive while it beats; the one that left is not missed
    wait_until(lambda: ended)
    assert ended[0].startswith("aepca: error: process 2 of 3 of this run has not answered for"), ended[0]
    assert ended[0].endswith("this process stopped too; NOTE")


def test_a_coordinator_that_stops_answering_is_lost(watch):
    coordinator = FakeCoordinator()
    _, ended = watch(1, 2, coordinator)
    coordinator.reachable = False
    wait_until(lambda: ended)
    assert ended[0].startswith("aepca: error: the run's coordinator (process 0) has not answered for")
