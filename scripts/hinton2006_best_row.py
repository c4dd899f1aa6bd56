"""aepca's best-recipe row of the Hinton & Salakhutdinov (2006) reproduction alone, full
protocol (``FULL.best_epochs`` epochs), with the validation error after every epoch.

The network is trained on 55,000 training images and its best epoch kept on the other
5,000 (``validation_split``), exactly as ``aepca reproduce hinton2006`` does; the test
set is used once, at the end.

    .venv/bin/python scripts/hinton2006_best_row.py runs/best_full.json [LEARNING_RATE]

An optional peak learning rate replaces the recipe's (to measure alternatives).
"""

import json
import sys
import time

from aepca._backend import set_default_backend

set_default_backend()

from aepca.data.mnist import load_mnist  # noqa: E402
from aepca.experiments import hinton2006 as h  # noqa: E402


def main(out: str, learning_rate: float | None = None) -> None:
    if learning_rate is not None:
        h.BEST_RECIPE["learning_rate"] = learning_rate
    started = time.perf_counter()
    mnist = load_mnist()
    x, x_test = mnist.x_train, mnist.x_test
    net, history, seconds, text, n_val = h._fit_best(x, h.FULL, 0, False)
    n_features = x.shape[1]
    reconstruct = h._keras_reconstruct(net.autoencoder)
    log = {
        "training": text,
        "validation_summed": [v * n_features for v in history["val_mse"]],
        "seconds": history["seconds"],
        "best_epoch": 1 + min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__),
        "final_test": h.summed_error(reconstruct, x_test),
        "final_train": h.summed_error(reconstruct, x),
        "fit_seconds": seconds,
        "total_seconds": time.perf_counter() - started,
    }
    with open(out, "w") as fh:
        json.dump(log, fh)
    print(f"best epoch {log['best_epoch']}: test {log['final_test']:.2f}, train {log['final_train']:.2f}, "
          f"{log['total_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else None)
