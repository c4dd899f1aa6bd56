"""The launcher of ``--processes N``: what it shows of the first worker's output and keeps of it."""

from __future__ import annotations

import io

import pytest

from aepca.launch import _relay, _why_stopped


class _Terminal(io.TextIOWrapper):
    def __init__(self):
        super().__init__(io.BytesIO(), encoding="utf-8")


def test_the_first_workers_stderr_is_shown_filtered_and_kept_whole(tmp_path):
    """It says why it failed when a signal killed it: a runtime's abort prints no aepca line, but its reason
    before a stack trace."""
    reason = b"F1207 12:00:00.012345   4242 service.cc:1] Check failed: the runtime's own reason\n"
    trace = (b"*** Check failure stack trace: ***\n    @     0x7f3a2b1c4d5e  (unknown)\nFatal Python error: Aborted\n\n"
             b'Current thread 0x00007f (most recent call first):\n  File "x.py", line 1 in <module>\n')
    printed = b"[Gloo] Rank 0 is connected to 1 peer ranks.\nnote: shown\naepca: error: held\n" + reason + trace
    log, out, held = tmp_path / "worker-0.err", _Terminal(), []
    _relay(io.BufferedReader(io.BytesIO(printed)), out, held, log)
    out.flush()
    assert out.buffer.getvalue() == b"note: shown\n" + reason + trace
    assert held == [b"aepca: error: held\n"]
    assert log.read_bytes() == printed
    assert _why_stopped(log) == reason.decode().strip()


@pytest.mark.parametrize("printed, why", [
    (b"terminate called after throwing an instance of 'std::runtime_error'\n  what():  gloo: connection closed\n"
     b"Fatal Python error: Aborted\n", "what():  gloo: connection closed"),
    (b"Fatal Python error: Segmentation fault\n\nThread 0x01 (most recent call first):\n  File \"x.py\", line 3\n",
     "Fatal Python error: Segmentation fault"),
    (b"note: training\nKilled\n", "Killed"),
    (b"", "it printed no message"),
])
def test_why_a_worker_stopped_is_the_runtimes_reason_else_its_last_line(tmp_path, printed, why):
    (tmp_path / "worker-0.err").write_bytes(printed)
    assert _why_stopped(tmp_path / "worker-0.err") == why
