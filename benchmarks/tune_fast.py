"""The measurements behind the ``fast`` recipe (docs/recipes.md).

Trains the classic 784-512-128-2 network on 50,000 MNIST training images and
monitors the other 10,000 (a seeded split; the test set is never used), for
each candidate setting, and prints the validation MSE after every epoch as
one JSON line per setting. Quality per epoch does not depend on machine load,
so this can run anywhere; speed is measured by benchmarks/run.py.

    .venv/bin/python benchmarks/tune_fast.py [--round 1|2|3|4] > tune.jsonl

Round 1 chose the first recipe; round 2 asked whether smaller batches reach
the classic 5-epoch level within two epochs; round 3 tried a shorter
second-moment memory (beta_2), Nadam and the output bias at the data mean,
mostly over three epochs (the current recipe), and round 4 the same over two.
"""

import argparse
import json
import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")  # this program's process, before Keras loads: JAX unless set

from aepca import Autoencoder  # noqa: E402
from aepca.data import load_dataset  # noqa: E402


def _candidate(init, learning_rate, batch_size, epochs, schedule="cosine", **other):
    return dict(init=init, learning_rate=learning_rate, batch_size=batch_size, epochs=epochs,
                schedule=schedule, warmup_epochs=0.2 if schedule == "cosine" else 0.0, **other)


ROUNDS = {
    1: [
        _candidate("random", 1e-3, 128, 5, "constant"),
        _candidate("random", 2e-3, 128, 5),
        _candidate("random", 3e-3, 128, 5),
        _candidate("random", 5e-3, 128, 5),
        _candidate("random", 8e-3, 128, 5),
        _candidate("pca", 1e-3, 128, 5),
        _candidate("pca", 5e-3, 128, 5),
        _candidate("random", 5e-3, 128, 3),
        _candidate("random", 8e-3, 128, 2),
        _candidate("random", 8e-3, 256, 3),
        _candidate("random", 1e-2, 128, 3),
    ],
    2: [
        _candidate("random", 5e-3, 128, 2),
        _candidate("random", 5e-3, 64, 2),
        _candidate("random", 3e-3, 64, 2),
        _candidate("random", 5e-3, 128, 2, loss="binary_crossentropy"),
        _candidate("random", 8e-3, 128, 2, loss="binary_crossentropy"),
        _candidate("random", 5e-3, 128, 2, optimizer="nadam"),
        _candidate("random", 3e-3, 32, 2),
        _candidate("random", 3e-3, 32, 5),
        _candidate("random", 5e-3, 64, 5),
        _candidate("random", 5e-3, 32, 2),
        _candidate("random", 2e-3, 32, 2),
    ],
    3: [
        _candidate("random", 5e-3, 128, 2, beta_2=0.95),
        _candidate("random", 8e-3, 128, 2, beta_2=0.99),
        _candidate("random", 5e-3, 128, 2, output_bias="mean"),
        _candidate("random", 8e-3, 128, 3, optimizer="nadam", beta_2=0.95),
        _candidate("random", 8e-3, 128, 3, optimizer="nadam", beta_2=0.95, output_bias="mean"),
        _candidate("random", 5e-3, 128, 3, optimizer="nadam", beta_2=0.95, output_bias="mean"),
        _candidate("random", 8e-3, 128, 3, optimizer="nadam", beta_2=0.99, output_bias="mean"),
        _candidate("random", 8e-3, 128, 3, beta_2=0.95, output_bias="mean"),
        _candidate("random", 1.2e-2, 128, 3, optimizer="nadam", beta_2=0.95, output_bias="mean"),
        _candidate("random", 1.2e-2, 256, 3, optimizer="nadam", beta_2=0.95, output_bias="mean"),
        _candidate("random", 8e-3, 128, 5, optimizer="nadam", beta_2=0.95, output_bias="mean"),
        _candidate("random", 8e-3, 128, 3, optimizer="nadam", beta_2=0.95, output_bias="mean", random_state=1),
        _candidate("random", 8e-3, 128, 3, optimizer="nadam", beta_2=0.95, output_bias="mean", random_state=2),
        _candidate("random", 8e-3, 128, 3, optimizer="nadam", beta_2=0.95, random_state=1),
        _candidate("random", 8e-3, 128, 3, optimizer="nadam", beta_2=0.95, random_state=2),
    ],
    4: [
        _candidate("random", 8e-3, 128, 2, optimizer="nadam", beta_2=0.95, output_bias="mean", random_state=seed)
        for seed in (0, 1, 2)
    ] + [
        _candidate("random", 8e-3, 128, 2, optimizer="nadam", beta_2=0.95, random_state=seed) for seed in (0, 1, 2)
    ] + [
        _candidate("random", 1.2e-2, 128, 2, optimizer="nadam", beta_2=0.95, output_bias="mean"),
        _candidate("random", 5e-3, 128, 2, optimizer="nadam", beta_2=0.95, output_bias="mean"),
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round", type=int, choices=sorted(ROUNDS), default=1)
    args = parser.parse_args()
    data = load_dataset("mnist")
    order = np.random.default_rng(123).permutation(len(data.x_train))
    x_fit, x_val = data.x_train[order[10000:]], data.x_train[order[:10000]]
    for candidate in ROUNDS[args.round]:
        ae = Autoencoder(2, **{"recipe": "classic", "random_state": 0, **candidate}).fit(x_fit, X_val=x_val)
        print(json.dumps(dict(candidate, val_mse=[round(v, 5) for v in ae.history_["val_mse"]])), flush=True)


if __name__ == "__main__":
    main()
