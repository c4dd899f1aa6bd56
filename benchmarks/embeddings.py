"""The autoencoder on unit-length embeddings, measured in their own units and standardised.

Writes ``aepca.data.synthetic.embeddings`` (100,000 x 384 by default) as a
``.npy`` file, runs ``aepca compare FILE --code-dim 32`` with ``--scale none``
and with ``--scale standard``, and measures the standard-trained
autoencoder's test MSE in the data's own units too, so that the two
trainings are compared in one space.

    .venv/bin/python benchmarks/embeddings.py --out runs/embeddings
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from aepca.cli import main as aepca


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=384)
    parser.add_argument("--code-dim", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("runs/embeddings"))
    args = parser.parse_args()
    from aepca import load_model
    from aepca.data.readers import load_user_data
    from aepca.data.synthetic import embeddings

    args.out.mkdir(parents=True, exist_ok=True)
    data = embeddings(n_samples=args.rows, n_features=args.features)
    path = args.out / "embeddings.npy"
    np.save(path, np.concatenate([data.x_train, data.x_test]))
    results = {}
    for scale in ("none", "standard"):
        out = args.out / scale
        status = aepca(["compare", str(path), "--code-dim", str(args.code_dim), "--scale", scale,
                        "--no-progress", "--overwrite", "--out", str(out)])
        assert status == 0, f"aepca compare --scale {scale} exited {status}"
        metrics = json.loads((out / "metrics.json").read_text())
        results[scale] = {key: metrics[key]["test_mse"] for key in ("pca", "autoencoder")}
        results[scale]["fit_seconds"] = metrics["autoencoder"]["fit_seconds"]
    # The standard-trained model's reconstructions, scored in the data's own units.
    split = load_user_data(path)
    model = load_model(args.out / "standard" / "model")
    reconstruction = model.reconstruct(split.x_test)
    results["standard"]["autoencoder_in_own_units"] = float(
        np.mean(np.square(reconstruction.astype(np.float64) - split.x_test))
    )
    none, standard = results["none"], results["standard"]
    results["summary"] = {
        "ae_below_pca_own_units": 1 - none["autoencoder"] / none["pca"],
        "none_vs_standard_trained_in_own_units": none["autoencoder"] / standard["autoencoder_in_own_units"],
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")  # this program's process: JAX unless set
    main()
