"""The measurements behind the ``fast`` recipe (docs/recipes.md).

Trains the classic 784-512-128-2 network on 50,000 MNIST training images and
monitors the other 10,000 (a seeded split; the test set is never used), for
each candidate setting, and prints the validation MSE after every epoch as
one JSON line per setting. Quality per epoch does not depend on machine load,
so this can run anywhere; speed is measured by benchmarks/run.py.

    .venv/bin/python benchmarks/tune_fast.py > tune.jsonl
"""

import json

import numpy as np

from aepca import Autoencoder
from aepca.data import load_dataset

# (init, learning rate, batch size, epochs, schedule)
CANDIDATES = [
    ("random", 1e-3, 128, 5, "constant"),
    ("random", 2e-3, 128, 5, "cosine"),
    ("random", 3e-3, 128, 5, "cosine"),
    ("random", 5e-3, 128, 5, "cosine"),
    ("random", 8e-3, 128, 5, "cosine"),
    ("pca", 1e-3, 128, 5, "cosine"),
    ("pca", 5e-3, 128, 5, "cosine"),
    ("random", 5e-3, 128, 3, "cosine"),
    ("random", 8e-3, 128, 2, "cosine"),
    ("random", 8e-3, 256, 3, "cosine"),
    ("random", 1e-2, 128, 3, "cosine"),
]


def main() -> None:
    data = load_dataset("mnist")
    order = np.random.default_rng(123).permutation(len(data.x_train))
    x_fit, x_val = data.x_train[order[10000:]], data.x_train[order[:10000]]
    for init, lr, batch, epochs, schedule in CANDIDATES:
        ae = Autoencoder(
            2, init=init, learning_rate=lr, batch_size=batch, epochs=epochs,
            schedule=schedule, warmup_epochs=0.2 if schedule == "cosine" else 0.0, random_state=0,
        ).fit(x_fit, X_val=x_val)
        row = dict(init=init, learning_rate=lr, batch_size=batch, epochs=epochs, schedule=schedule,
                   val_mse=[round(v, 5) for v in ae.history_["val_mse"]])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
