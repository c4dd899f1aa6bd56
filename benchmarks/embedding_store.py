"""An embedding store as people keep one: a Parquet file of ``id``, ``text`` and a list ``embedding`` column.

Writes ``aepca.data.synthetic.embeddings`` (100,000 x 384 by default) that way,
trains and compares with ``aepca compare store.parquet --id-column id
--drop-columns text``, then encodes a file of one block and the whole store
(10 blocks) in fresh processes and reports each one's peak memory: encoding
reads and writes a block at a time, so the peak should not grow with the file.

    .venv/bin/python benchmarks/embedding_store.py --out runs/embedding-store
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

PEAK = (
    "import resource, sys; from aepca.cli import main; status = main(sys.argv[1:]); "
    "print('peak_mib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024); sys.exit(status)"
)


def write_store(path: Path, x: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    offsets = pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32))
    table = pa.table({
        "id": pa.array(np.arange(len(x), dtype=np.int64) + 10_000_000),
        "text": pa.array([f"sentence number {i}" for i in range(len(x))]),
        "embedding": pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1))),
    })
    pq.write_table(table, path, row_group_size=65_536)


def encode_peak(model: Path, data: Path, out: Path, block_rows: int) -> float:
    command = [sys.executable, "-c", PEAK, "encode", str(model), str(data), "--out", str(out),
               "--block-rows", str(block_rows), "--overwrite"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.split("peak_mib")[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--block-rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("runs/embedding-store"))
    args = parser.parse_args()
    from aepca.cli import main as aepca
    from aepca.data.synthetic import embeddings

    args.out.mkdir(parents=True, exist_ok=True)
    data = embeddings(n_samples=args.rows)
    x = np.concatenate([data.x_train, data.x_test])
    store, one_block = args.out / "store.parquet", args.out / "one-block.parquet"
    write_store(store, x)
    write_store(one_block, x[: args.block_rows])
    run = args.out / "compare"
    status = aepca(["compare", str(store), "--id-column", "id", "--drop-columns", "text", "--code-dim", "32",
                    "--no-progress", "--overwrite", "--out", str(run)])
    assert status == 0, f"aepca compare exited {status}"
    metrics = json.loads((run / "metrics.json").read_text())
    peaks = {
        f"{rows} rows": encode_peak(run / "model", path, args.out / f"codes-{rows}.parquet", args.block_rows)
        for rows, path in ((args.block_rows, one_block), (args.rows, store))
    }
    print(json.dumps({
        "pca_test_mse": metrics["pca"]["test_mse"], "autoencoder_test_mse": metrics["autoencoder"]["test_mse"],
        "encode_peak_mib": peaks, "block_rows": args.block_rows,
    }, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")  # this program's process: JAX unless set
    main()
