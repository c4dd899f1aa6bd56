"""``aepca ... --processes N``: N local workers joined by JAX's multi-process runtime.

The launching process imports nothing heavy: it picks a free port for the
coordinator, starts the workers (the same command with ``--coordinator``,
``--num-processes`` and ``--process-id``), shows the first worker's output
(less gloo's connection messages) and ends the whole run as soon as any
worker fails, with one line saying why and the worker's exit status.

The workers run in a process group of their own: a Ctrl-C at the terminal
reaches the launcher only, which passes it on as one SIGTERM per worker, so a
worker gets one signal and its clean-up (the checkpoint kept, the folder
released) is not cut short by a second.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# How long workers get to stop (and write a checkpoint) after SIGTERM before SIGKILL.
STOP_GRACE_S = 20
POLL_S = 0.2
GLOO_CHATTER = b"[Gloo] "
# JAX's one warning that its runtime runs in the recoverable mode aepca chooses (aepca.distributed).
RECOVERABLE_NOTICE = b"Using experimental recoverable task feature"
ERROR_PREFIX = b"aepca: error: "
INTERRUPTED_PREFIX = b"aepca: interrupted"


class WorkerFailed(RuntimeError):
    """A worker of a multi-process run ended with an error; ``status`` is the run's exit status (the
    worker's own: 2 bad input, 130 interrupted, 1 anything else, or killed by a signal)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status if status in (1, 2, 130) else 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def worker_argv(argv: list[str], processes: int, port: int, index: int) -> list[str]:
    """Worker ``index``'s command line: ``argv`` joined to the coordinator (a worker runs, it does not launch)."""
    return [
        sys.executable, "-m", "aepca", *argv, "--coordinator", f"127.0.0.1:{port}",
        "--num-processes", str(processes), "--process-id", str(index),
    ]


def run_workers(argv: list[str], processes: int) -> int:
    """Run ``argv`` (an aepca command line, subcommand first) as ``processes`` workers; return the exit status.

    The first worker's output is shown as it comes; a failure is reported in
    one line: the first worker's own error, or the failure of the worker that
    ended first (the others then fail only because it is gone).
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aepca-workers-") as logs:
        logs_of = [Path(logs) / f"worker-{index}.err" for index in range(processes)]
        workers = []
        for index, log in enumerate(logs_of):
            with open(log, "w") as err:
                workers.append(subprocess.Popen(
                    worker_argv(argv, processes, port, index),
                    stdout=subprocess.PIPE if index == 0 else subprocess.DEVNULL,
                    stderr=subprocess.PIPE if index == 0 else err,
                    process_group=0,  # signals come from the launcher only, once
                ))
        held: list[bytes] = []
        relays = [
            threading.Thread(target=_relay, args=(workers[0].stdout, sys.stdout, []), daemon=True),
            threading.Thread(target=_relay, args=(workers[0].stderr, sys.stderr, held, logs_of[0]), daemon=True),
        ]
        for relay in relays:
            relay.start()
        try:
            first_failed, status = _wait(workers)
        except KeyboardInterrupt:
            # The workers checkpoint and stop; the first says so and how to resume. (A second Ctrl-C
            # ends the launcher at once: the command's handler; the workers still stop as told.)
            _stop(workers)
            first_failed, status = None, workers[0].returncode if workers[0].returncode >= 0 else 130
        for relay in relays:
            relay.join()
        # The first worker's own error line is shown as it is, unless a signal killed it.
        if first_failed is not None and (first_failed != 0 or status < 0):
            how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"ended with status {status}"
            message = _why_stopped(logs_of[first_failed]).removeprefix(ERROR_PREFIX.decode())
            # The first worker, stopped, may have kept a checkpoint: say so on the same line.
            kept = [line.decode(errors="replace").strip().removeprefix(INTERRUPTED_PREFIX.decode()) for line in held
                    if line.startswith(INTERRUPTED_PREFIX)]
            raise WorkerFailed(f"worker {first_failed} of {processes} {how}: {message}{''.join(kept)}", status)
        for line in held:
            sys.stderr.buffer.write(line)
        sys.stderr.flush()
        return status


def _relay(stream, out, held: list[bytes], log: Path | None = None) -> None:
    """Copy a worker's output to ``out`` as it comes, less gloo's connection lines;
    its error and interruption lines go into ``held``, shown (or joined to the launcher's
    own line) once the run's outcome is known. ``log`` gets all of it, for the last line
    that says why a worker killed by a signal failed."""
    line = b""
    with open(log, "ab") if log is not None else contextlib.nullcontext() as copy:
        for piece in iter(lambda: stream.read1(65536), b""):
            if copy is not None:
                copy.write(piece)
            for part in piece.splitlines(keepends=True):
                line += part
                if line.endswith((b"\n", b"\r")):  # a whole line, or a progress bar's update
                    if line.startswith((ERROR_PREFIX, INTERRUPTED_PREFIX)):
                        held.append(line)
                    elif not line.startswith(GLOO_CHATTER) and RECOVERABLE_NOTICE not in line:
                        out.buffer.write(line)
                    line = b""
            out.flush()
    if line:
        out.buffer.write(line)
        out.flush()
    stream.close()


# Lines in which a runtime says why it stopped a process, most telling first, each followed by a stack
# trace: absl's fatal log line (XLA's and JAX's C++), a C++ exception's message, Python's fatal error.
_REASONS = (re.compile(r"F\d{4} \d\d:\d\d:\d\d\.\d+ "), re.compile(r"what\(\): "), re.compile(r"Fatal Python error: "))


def _why_stopped(path: Path) -> str:
    """Why the worker whose output ``path`` holds stopped: a runtime's reason where it printed one, else its
    last line."""
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        for reason in _REASONS:
            found = [line for line in lines if reason.match(line)]
            if found:
                return found[-1]
        if lines:
            return lines[-1]
    return "it printed no message"


def _wait(workers: list[subprocess.Popen]) -> tuple[int | None, int]:
    """Wait for every worker; on the first failure stop the others. Returns
    (the worker that failed first or None, the exit status to report)."""
    while True:
        codes = [worker.poll() for worker in workers]
        failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            _stop(workers)
            return failed[0], codes[failed[0]]
        if all(code == 0 for code in codes):
            return None, 0
        time.sleep(POLL_S)


def _stop(workers: list[subprocess.Popen]) -> None:
    """SIGTERM to every worker still running; SIGKILL to those not gone ``STOP_GRACE_S`` later."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=max(0.0, deadline - time.monotonic()))
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def cluster_processes() -> int:
    """The number of processes a cluster scheduler started for this job (SLURM, Open MPI), else 1."""
    for variable in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        with contextlib.suppress(ValueError):
            if int(os.environ.get(variable, "1")) > 1:
                return int(os.environ[variable])
    return 1
