"""The launcher of ``--processes N``: what it shows of the first worker's output and keeps of it."""

from __future__ import annotations

import io

from aepca.launch import _last_line, _relay


class _Terminal(io.TextIOWrapper):
    def __init__(self):
        super().__init__(io.BytesIO(), encoding="utf-8")


def test_the_first_workers_stderr_is_shown_filtered_and_kept_whole(tmp_path):
    """Its last line says why it failed when a signal killed it (a runtime's abort prints no aepca line)."""
    printed = (b"[Gloo] Rank 0 is connected to 1 peer ranks.\nnote: shown\naepca: error: held\n"
               b"F1207 12:00:00.0 service.cc:1] Check failed: the runtime's own reason\n")
    log, out, held = tmp_path / "worker-0.err", _Terminal(), []
    _relay(io.BufferedReader(io.BytesIO(printed)), out, held, log)
    out.flush()
    assert out.buffer.getvalue() == b"note: shown\nF1207 12:00:00.0 service.cc:1] Check failed: the runtime's own reason\n"
    assert held == [b"aepca: error: held\n"]
    assert log.read_bytes() == printed
    assert _last_line(log) == "F1207 12:00:00.0 service.cc:1] Check failed: the runtime's own reason"
