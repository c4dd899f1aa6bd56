"""Several processes fitting one model, on JAX's multi-process runtime.

Every process runs the same program on its share of the data; the few
numbers they must agree on (sums of errors, PCA statistics, per-row errors of
held-out rows) are exchanged here as bytes, so float64 values stay float64
whatever JAX's x64 setting. With one process every function is a no-op.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import socket
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

# JAX's heartbeat: a process silent this long counts as dead to the coordinator, and a coordinator
# silent this long makes a process abort (JAX's own end, a page of C++). aepca's watch ends a run
# with one line sooner: a process missing, or a coordinator silent, for LOST_AFTER_S.
HEARTBEAT_TIMEOUT_S = 20
LOST_AFTER_S = 10
# The most the first process (the coordinator's host) waits for the others to leave at exit.
SHUTDOWN_TIMEOUT_S = 10
INITIALIZATION_TIMEOUT_S = 60
# How often the watch asks the coordinator who is still there.
WATCH_POLL_S = 1.0
# Key-value entries of the coordinator: each process's latest beat, and the processes that left the
# run on their own (at their exit), not lost.
_BEAT = "aepca/beat/"
_LEFT = "aepca/left/"


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               *, lost_note: Callable[[], str] | None = None) -> None:
    """Join a multi-process run: the given coordinator (``HOST:PORT``), or with
    none given the cluster JAX detects (SLURM, Open MPI, Kubernetes).

    A coordinator on another host needs this host's name to resolve to an address the others
    reach (:func:`check_reachable_hostname`). Once joined, a lost process (its host stopped, its
    network cut) ends every other one within a minute with one line on stderr and exit status 1,
    instead of a hang or JAX's abort; ``lost_note()`` adds to that line (e.g. where the checkpoint
    is). The runtime is JAX's in its recoverable mode, so that a process that fails does not take
    the others down with a C++ abort before they say so themselves.
    """
    import jax
    from jax._src import distributed as runtime  # JAX's own state: its client is the coordinator's

    if coordinator is not None:
        check_reachable_hostname(coordinator)
    jax.config.update("jax_enable_recoverability", True)
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=INITIALIZATION_TIMEOUT_S,
        heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
        shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S,
    )
    state = runtime.global_state
    if state.num_processes > 1:
        watch = _Watch(state.client, state.process_id, state.num_processes, lost_note)
        # Registered after JAX's own clean-up, so run before it (atexit is last in, first out).
        atexit.register(watch.leave)


def check_reachable_hostname(coordinator: str) -> None:
    """Refuse to join a coordinator on another host when this host's name resolves to a loopback
    address: JAX's collectives (gloo) listen on the address the hostname resolves to, which the
    other hosts cannot reach (many hosts map their name to 127.0.1.1 in /etc/hosts)."""
    host = coordinator.rpartition(":")[0].strip("[]")
    try:
        coordinator_addresses = {info[4][0] for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError) as error:
        raise ValueError(
            f"Received an invalid value for coordinator: its host {host!r} does not resolve to an address "
            f"({error}). Received: coordinator={coordinator!r}. Give the first process's host name or address "
            "as HOST:PORT."
        ) from None
    if all(_is_loopback(address) for address in coordinator_addresses):
        return  # every process runs on this machine
    name = socket.gethostname()
    address = _listening_address(name)
    if address is None:
        raise ValueError(
            f"This machine's hostname {name!r} does not resolve to an address of this machine, and JAX's "
            "collectives (gloo) listen on the address the hostname resolves to; map the hostname to this "
            f"host's network address in /etc/hosts (a line such as '10.0.0.5 {name}'), or run with a "
            "hostname that resolves to it."
        )
    if _is_loopback(address):
        raise ValueError(
            f"This machine's hostname {name!r} resolves to {address}, a loopback address the other hosts "
            "cannot reach, and JAX's collectives (gloo) listen on the address the hostname resolves to; "
            f"map {name!r} to this host's network address in /etc/hosts (a line such as '10.0.0.5 {name}' "
            "instead of the loopback one), or run with a hostname that resolves to it."
        )


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address.split("%")[0]).is_loopback


def _listening_address(name: str) -> str | None:
    """The address gloo listens on for hostname ``name``: the first it resolves to that this
    machine can bind, or None."""
    with contextlib.suppress(socket.gaierror, UnicodeError):
        for family, kind, protocol, _, address in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM):
            with contextlib.suppress(OSError), socket.socket(family, kind, protocol) as probe:
                probe.bind((address[0], 0, *address[2:]))
                return address[0]
    return None


class _Watch:
    """Ends this process, with one line, when another process of the run is lost.

    Every process's ``aepca-peers`` thread counts a beat into the coordinator's key-value store
    every WATCH_POLL_S and reads the others' beats and who left on their own (at exit). The
    ``aepca-watch`` thread ends this process when another one has not beaten, and has not left,
    for LOST_AFTER_S, or when the coordinator has not answered for LOST_AFTER_S. The training step
    waiting on a lost process never returns, so the line is written here and the process ends with
    ``os._exit(1)``: every checkpoint is complete (they are replaced atomically) and the folder lock
    dies with the process.
    """

    def __init__(self, client, process: int, count: int, note: Callable[[], str] | None):
        self._client, self._process, self._count, self._note = client, process, count, note
        now = time.monotonic()
        self._answered = now
        # Each other process's last beat seen, and when it changed (here, on this clock).
        self._beats: dict[int, tuple[str | None, float]] = {p: (None, now) for p in range(count) if p != process}
        self._left: set[int] = set()
        self._leaving = threading.Event()
        for target, name in ((self._ask, "aepca-peers"), (self._judge, "aepca-watch")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def _ask(self) -> None:
        beat = 0
        while not self._leaving.is_set():
            beat += 1
            # A coordinator that does not answer is judged by the time since it last did.
            with contextlib.suppress(Exception):
                self._client.key_value_set(f"{_BEAT}{self._process}", str(beat), allow_overwrite=True)
                beats = _by_process(self._client.key_value_dir_get(_BEAT))
                self._left |= set(_by_process(self._client.key_value_dir_get(_LEFT)))
                now = self._answered = time.monotonic()
                for other, (seen, _) in self._beats.items():
                    if beats.get(other) != seen:
                        self._beats[other] = (beats.get(other), now)
            self._leaving.wait(WATCH_POLL_S)

    def _judge(self) -> None:
        while not self._leaving.wait(WATCH_POLL_S):
            now = time.monotonic()
            if self._process != 0 and now - self._answered >= LOST_AFTER_S:
                self._end(f"the run's coordinator (process 0) has not answered for {now - self._answered:.0f} s")
            for other, (_, since) in list(self._beats.items()):
                if other not in self._left and now - since >= LOST_AFTER_S:
                    self._end(f"process {other} of {self._count} of this run has not answered for {now - since:.0f} s")

    def _end(self, what: str) -> None:
        if self._leaving.is_set():
            return  # the process is leaving on its own; its own line says why
        note = ""
        with contextlib.suppress(Exception):
            note = self._note() if self._note is not None else ""
        _exit_now(f"aepca: error: {what} (its host stopped, or the network between the hosts failed); "
                  f"this process stopped too{note}")

    def leave(self) -> None:
        """At exit: stop watching and leave the run, so that no one counts this process lost and
        JAX's own shutdown after this neither blocks nor aborts.

        Another process says it leaves (then JAX disconnects it); if its coordinator is gone, it ends
        at once with status 1 instead (JAX's shutdown would abort it). The first process hosts the
        coordinator: once every other one said it leaves, it waits until they are disconnected, all
        within SHUTDOWN_TIMEOUT_S (a process that failed leaves the others waiting on it, which
        this time bounds)."""
        self._leaving.set()
        if self._process != 0:
            if not _within(LOST_AFTER_S / 2, self._client.key_value_set, f"{_LEFT}{self._process}", ""):
                _exit_now(None)
            return
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
        others = set(self._beats)
        with contextlib.suppress(Exception):
            while not others <= set(_by_process(self._client.key_value_dir_get(_LEFT))):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)
            # Returns once every other process is disconnected (it waits for all live ones).
            _within(max(0.0, deadline - time.monotonic()), self._client.get_live_nodes, list(range(self._count)))


def _within(seconds: float, call, *args) -> bool:
    """Whether ``call(*args)`` returned without error within ``seconds`` (run in a daemon thread,
    left behind when it does not)."""
    done = threading.Event()

    def run():
        with contextlib.suppress(Exception):
            call(*args)
            done.set()

    threading.Thread(target=run, name="aepca-leave", daemon=True).start()
    return done.wait(seconds)


def _by_process(entries) -> dict[int, str]:
    """Key-value entries ``(.../PROCESS, value)`` by process number."""
    return {int(key.rpartition("/")[2]): value for key, value in entries}


def _exit_now(line: str | None) -> None:
    """End the process at once with status 1 (no clean-up: JAX's would block or abort), after
    writing ``line`` to stderr and flushing what was printed."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if line is not None:
        with contextlib.suppress(OSError):
            os.write(2, (line + "\n").encode(errors="replace"))
    os._exit(1)


def process_count() -> int:
    import jax

    return jax.process_count()


def process_index() -> int:
    import jax

    return jax.process_index()


def is_writer() -> bool:
    """Whether this process writes results: only the first one does."""
    return process_index() == 0


def share(n_items: int) -> range:
    """The items (e.g. blocks of a pass over a file) this process takes: every n-th."""
    return range(process_index(), n_items, process_count())


def read_share(source):
    """This process's share of a row source's blocks (see :func:`share`), read ahead in a background
    thread: a :class:`aepca.prefetch.Prefetch`, to use as ``with read_share(source) as blocks: ...``."""
    from aepca.prefetch import prefetch

    return prefetch(source.iter_blocks(share(source.n_blocks)))


def _gather_bytes(values: np.ndarray) -> list[np.ndarray]:
    """Every process's ``values`` (same shape and dtype on all), in process order."""
    from jax.experimental import multihost_utils

    flat = np.ascontiguousarray(values).reshape(-1)
    gathered = np.asarray(multihost_utils.process_allgather(flat.view(np.uint8), tiled=False))
    return [row.view(flat.dtype).reshape(np.shape(values)) for row in gathered]


def all_sum(values) -> np.ndarray:
    """The element-wise float64 sum of ``values`` over every process."""
    values = np.asarray(values, dtype=np.float64)
    if process_count() == 1:
        return values
    return np.sum(_gather_bytes(values), axis=0)


def mean_of(value: float) -> float:
    """The mean of ``value`` over the processes (``value`` itself in one process)."""
    return float(all_sum([value])[0]) / process_count()


def all_rows(values: np.ndarray) -> np.ndarray:
    """Every process's rows of ``values`` (any lengths), concatenated in process order."""
    values = np.asarray(values)
    if process_count() == 1:
        return values
    lengths = [int(n[0]) for n in _gather_bytes(np.array([len(values)], np.int64))]
    padded = np.zeros((max(lengths), *values.shape[1:]), values.dtype)
    padded[: len(values)] = values
    return np.concatenate([rows[:n] for rows, n in zip(_gather_bytes(padded), lengths)])


def host(array) -> np.ndarray:
    """A host copy of a JAX array that may span other processes' devices
    (it must then be replicated, as training state and totals are)."""
    if getattr(array, "is_fully_addressable", True):
        return np.array(array)
    return np.array(array.addressable_data(0))


def barrier(name: str) -> None:
    """Wait until every process got here."""
    if process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
