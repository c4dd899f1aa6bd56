"""``aepca ... --processes N``: N local workers joined by JAX's multi-process runtime.

The launching process imports nothing heavy: it picks a free port for the
coordinator, starts the workers (the same command with ``--coordinator``,
``--num-processes`` and ``--process-id``), shows the first worker's output
(less gloo's connection messages) and ends the whole run as soon as any worker fails, with that worker's last
message as one line.
"""

from __future__ import annotations

import contextlib
import os
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


class WorkerFailed(RuntimeError):
    """A worker of a multi-process run ended with an error."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def worker_argv(argv: list[str], processes: int, port: int, index: int) -> list[str]:
    """Worker ``index``'s command line: ``argv`` without ``--processes``, joined to the coordinator."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            kept.append(arg)
    return [
        sys.executable, "-m", "aepca", *kept, "--coordinator", f"127.0.0.1:{port}",
        "--num-processes", str(processes), "--process-id", str(index),
    ]


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "no message"


def run_workers(argv: list[str], processes: int) -> int:
    """Run ``argv`` (an aepca command line, subcommand first) as ``processes`` workers; return the exit status."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aepca-workers-") as logs:
        workers, errors = [], []
        for index in range(processes):
            error_log = Path(logs) / f"worker-{index}.err"
            errors.append(error_log)
            with open(error_log, "w") as err:
                # The first worker speaks to the user; the others only report failures.
                workers.append(subprocess.Popen(
                    worker_argv(argv, processes, port, index),
                    stdout=subprocess.PIPE if index == 0 else subprocess.DEVNULL,
                    stderr=None if index == 0 else err,
                ))
        relay = threading.Thread(target=_relay_output, args=(workers[0].stdout,), daemon=True)
        relay.start()
        try:
            status = _wait(workers, errors)
            relay.join()
            return status
        except KeyboardInterrupt:
            _stop(workers, signal.SIGTERM)
            raise


def _relay_output(stream) -> None:
    """The first worker's output, less the line gloo prints per connection."""
    for line in iter(stream.readline, b""):
        if not line.startswith(GLOO_CHATTER):
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
    stream.close()


def _wait(workers: list[subprocess.Popen], errors: list[Path]) -> int:
    while True:
        codes = [worker.poll() for worker in workers]
        failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            index = failed[0]
            _stop(workers, signal.SIGTERM)
            if index == 0:
                return codes[0]  # the first worker printed its own message
            raise WorkerFailed(f"worker {index} of {len(workers)} ended with status {codes[index]}: {_last_line(errors[index])}")
        if all(code == 0 for code in codes):
            return 0
        time.sleep(POLL_S)


def _stop(workers: list[subprocess.Popen], how: int) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(how)
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
