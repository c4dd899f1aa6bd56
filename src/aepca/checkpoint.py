"""Atomic training checkpoints of the last finished epoch, and resuming from them.

A checkpoint holds everything the training loop needs to continue exactly
where it stopped: weights, optimizer state (step counter and moments), the
number of finished epochs, the learning-rate scale, the history and the best
weights so far. Shuffling (and a stream's order) is a pure function of (seed,
epoch), so a resumed run sees the same batches as an uninterrupted one. Arrays go to an ``.npz``
(loaded with ``allow_pickle=False``) and the rest to JSON: nothing in a
checkpoint is ever executed.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from time import monotonic

import numpy as np

from aepca._files import write_atomic
from aepca._keras import keras
from aepca.data.sources import RowSource, open_source
from aepca.training import TrainState

CHECKPOINT_FILE = "checkpoint.npz"
# An epoch's checkpoint is written once this many times what writing the last one took has passed
# since: writing then costs at most about 5% of training (docs/usage.md).
WRITE_INTERVAL = 20.0
GROUPS = ("trainable", "non_trainable", "optimizer", "best_trainable", "best_non_trainable")


def run_fingerprint(run: dict, data) -> dict:
    """What a checkpoint must have been written by: ``run`` (JSON values), the backend, and under
    ``"data"`` the fingerprint of each input (``data``: a mapping of names to inputs, or a sequence;
    None entries stay None, so an entry keeps its place). Every input is seen as a row source
    (:func:`aepca.data.sources.open_source`), so a refused resume can name the file, the row
    count or the column that differs (:func:`describe_differences`)."""
    if isinstance(data, Mapping):
        inputs = {str(name): data_fingerprint(value) for name, value in data.items()}
    else:
        inputs = [data_fingerprint(value) for value in data]
    # Through JSON, as the checkpoint stores it: tuples become lists and compare equal after a resume.
    return json.loads(json.dumps({**run, "data": inputs, "backend": keras.backend.backend()}))


def data_fingerprint(data) -> dict | None:
    """An input's identity: its row source's :meth:`~aepca.data.sources.RowSource.fingerprint`; rows held
    in memory (an array, a 1-D array as one column) also by the SHA-256 of all of them, which costs
    little beside training on them and notices any changed value."""
    if data is None:
        return None
    if not isinstance(data, RowSource):
        data = np.asarray(data)
        if data.size == 0:
            return {"kind": "array", "shape": list(data.shape), "dtype": str(data.dtype)}
        data = open_source(data.reshape(len(data), -1) if data.ndim == 1 else data)
    fingerprint = data.fingerprint()
    if data.in_memory:
        digest = hashlib.sha256()
        for block in data.iter_blocks():
            digest.update(np.ascontiguousarray(block))  # the buffer itself: .tobytes() would copy it
        fingerprint["sha256"] = digest.hexdigest()
    return fingerprint


_ABSENT = object()
# Keys that name an item of a list (a file of a folder), so lists are compared item by item by name.
_NAMING_KEYS = ("name", "path", "file")


def describe_differences(stored, current, *, limit: int = 6) -> list[str]:
    """What differs between two nested JSON values, one ``where: old -> new`` line per difference
    (e.g. ``settings.epochs: 5 -> 10``, ``data[0].files[part-2.parquet].rows: 10000 -> 10001``);
    at most ``limit`` lines, the last one counting the rest."""
    found: list[str] = []
    _differences(stored, current, "", found)
    if len(found) > limit:
        found = [*found[: limit - 1], f"and {len(found) - limit + 1} more"]
    return found


def _differences(old, new, where: str, found: list[str]) -> None:
    if old == new and type(old) is type(new):
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(key for key in new if key not in old)]:
            _differences(old.get(key, _ABSENT), new.get(key, _ABSENT), f"{where}.{key}" if where else str(key), found)
    elif isinstance(old, list) and isinstance(new, list):
        old_items, new_items = _named_items(old), _named_items(new)
        if old_items is None or new_items is None:
            old_items, new_items = dict(enumerate(old)), dict(enumerate(new))
        for key in [*old_items, *(key for key in new_items if key not in old_items)]:
            _differences(old_items.get(key, _ABSENT), new_items.get(key, _ABSENT), f"{where}[{key}]", found)
    else:
        found.append(f"{where or 'value'}: {_shown(old)} -> {_shown(new)}")


def _named_items(items: list) -> dict | None:
    """``items`` by the file name of their naming key, when every item is a dict with one and the names
    are distinct; else None."""
    for key in _NAMING_KEYS:
        if items and all(isinstance(item, dict) and isinstance(item.get(key), str) for item in items):
            names = [Path(item[key]).name for item in items]
            if len(set(names)) == len(names):
                return dict(zip(names, items, strict=True))
    return None


def _shown(value, width: int = 40) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 3] + "..."


def save_checkpoint(folder, state: TrainState, fingerprint: dict) -> Path:
    """Write ``state`` into ``folder``; a crash mid-write leaves the previous one intact.

    ``fingerprint`` describes the run (settings and data shape); resuming a
    different run from this checkpoint is refused.
    """
    folder = Path(folder)
    best_loss, *best = state.best if state.best else (None, [], [])
    groups = dict(zip(GROUPS, (state.trainable, state.non_trainable, state.optimizer, *best), strict=True))
    arrays = {f"{group}_{i}": np.asarray(value) for group, values in groups.items() for i, value in enumerate(values)}
    meta = {
        "epoch": state.epoch,
        "lr_scale": state.lr_scale,
        "history": state.history,
        "best_loss": best_loss,
        "counts": {group: len(values) for group, values in groups.items()},
        "fingerprint": fingerprint,
    }
    arrays["meta"] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(folder / CHECKPOINT_FILE, buffer.getvalue(), durable=True)
    return folder


def checkpoint_epoch(folder) -> int:
    """Epochs finished in the checkpoint in ``folder`` (0 when there is none)."""
    try:
        with np.load(Path(folder) / CHECKPOINT_FILE, allow_pickle=False) as npz:
            return int(json.loads(str(npz["meta"]))["epoch"])
    except FileNotFoundError:
        return 0


def load_checkpoint(folder, fingerprint: dict) -> TrainState | None:
    """The checkpoint in ``folder``, or None when there is none yet."""
    file = Path(folder) / CHECKPOINT_FILE
    if not file.exists():
        return None
    try:
        with np.load(file, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            groups = {group: [npz[f"{group}_{i}"] for i in range(meta["counts"][group])] for group in GROUPS}
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"The checkpoint in {folder} is unreadable ({error}); delete the folder to start over."
        ) from None
    if meta.get("fingerprint") != fingerprint:
        differences = "; ".join(describe_differences(meta.get("fingerprint"), fingerprint))
        raise ValueError(
            f"The checkpoint in {folder} was written by a run with other settings or data ({differences}); "
            "resume with the same arguments and data, or delete the folder to start over."
        )
    best = meta["best_loss"], groups["best_trainable"], groups["best_non_trainable"]
    return TrainState(groups["trainable"], groups["non_trainable"], groups["optimizer"], epoch=meta["epoch"],
                      lr_scale=meta["lr_scale"], history=meta["history"], best=None if best[0] is None else best)


class Checkpointer:
    """A training callback keeping a checkpoint of the last finished epoch.

    The first epoch is written, then an epoch once ``WRITE_INTERVAL`` times the last write's duration
    has passed, and the last one when training ends, however it ends (done, Ctrl-C, SIGTERM, an error).
    Only a process killed outright loses the epochs since the last write: at most about ``WRITE_INTERVAL``
    writes' time.
    """

    def __init__(self, folder, fingerprint: dict):
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self._pending: TrainState | None = None  # the last finished epoch's state, while not yet written
        self._due = 0.0  # time.monotonic() from which an epoch is written

    def __call__(self, epoch, history, snapshot) -> None:
        self._pending = snapshot()
        if monotonic() >= self._due:
            self._write()

    def close(self) -> None:
        if self._pending is not None:
            self._write()

    def _write(self) -> None:
        started = monotonic()
        save_checkpoint(self.folder, self._pending, self.fingerprint)
        ended = monotonic()
        self._pending, self._due = None, ended + WRITE_INTERVAL * (ended - started)
