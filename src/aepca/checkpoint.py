"""Atomic per-epoch training checkpoints, and resuming from them.

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
from pathlib import Path

import numpy as np

from aepca._files import write_atomic
from aepca._keras import keras
from aepca.data.sources import RowSource
from aepca.training import TrainState

CHECKPOINT_FILE = "checkpoint.npz"
GROUPS = ("trainable", "non_trainable", "optimizer", "best_trainable", "best_non_trainable")


def run_fingerprint(run: dict, arrays) -> dict:
    """What a checkpoint must have been written by: ``run`` (JSON values)
    plus the SHA-256 of ``arrays`` (the data, or a row source's identity:
    its files, sizes and times; ``None`` entries skipped) and the backend."""
    digest = hashlib.sha256()
    for array in arrays:
        if isinstance(array, RowSource):
            digest.update(json.dumps(array.fingerprint(), sort_keys=True).encode())
        elif array is not None:
            # Hashing the buffers themselves: .tobytes() would copy the whole data set.
            digest.update(np.ascontiguousarray(array))
    return {**run, "data_sha256": digest.hexdigest(), "backend": keras.backend.backend()}


def save_checkpoint(folder, state: TrainState, fingerprint: dict) -> Path:
    """Write ``state`` into ``folder``; a crash mid-write leaves the previous one intact.

    ``fingerprint`` describes the run (settings and data shape); resuming a
    different run from this checkpoint is refused.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    best_loss, best_trainable, best_non_trainable = state.best if state.best else (None, [], [])
    groups = {
        "trainable": state.trainable,
        "non_trainable": state.non_trainable,
        "optimizer": state.optimizer,
        "best_trainable": best_trainable,
        "best_non_trainable": best_non_trainable,
    }
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
            groups = {
                group: [npz[f"{group}_{i}"] for i in range(meta["counts"][group])] for group in GROUPS
            }
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"The checkpoint in {folder} is unreadable ({error}); delete the folder to start over."
        ) from None
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(
            f"The checkpoint in {folder} was written by a run with other settings or data; "
            "resume with the same arguments, or delete the folder to start over."
        )
    best = None
    if meta["best_loss"] is not None:
        best = (meta["best_loss"], groups["best_trainable"], groups["best_non_trainable"])
    return TrainState(
        trainable=groups["trainable"],
        non_trainable=groups["non_trainable"],
        optimizer=groups["optimizer"],
        epoch=meta["epoch"],
        lr_scale=meta["lr_scale"],
        history=meta["history"],
        best=best,
    )


class Checkpointer:
    """A training callback writing a checkpoint after every epoch."""

    def __init__(self, folder, fingerprint: dict):
        self.folder = Path(folder)
        self.fingerprint = fingerprint

    def __call__(self, epoch, history, snapshot) -> None:
        save_checkpoint(self.folder, snapshot(), self.fingerprint)
