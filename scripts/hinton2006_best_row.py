"""aepca's best-recipe row of the Hinton & Salakhutdinov (2006) reproduction alone, full
protocol (``FULL.best_epochs`` epochs), with the validation error after every epoch.

The network is trained on 55,000 training images and its best epoch kept on the other
5,000 (``validation_split``), exactly as ``aepca reproduce hinton2006`` does; the test
set is used once, at the end.

    .venv/bin/python scripts/hinton2006_best_row.py OUT.json [LEARNING_RATE [INPUT_DROPOUT]]

An optional peak learning rate replaces the recipe's, and an optional input dropout rate
trains the same network on randomly masked inputs while the targets stay clean (a
regularisation candidate, measured here before any recipe adopts it).
"""

import json
import sys
import time
from unittest import mock

from aepca._backend import load_keras

keras = load_keras()

from aepca import training  # noqa: E402
from aepca.data.mnist import load_mnist  # noqa: E402
from aepca.experiments import hinton2006 as h  # noqa: E402


def train_on_masked_inputs(rate: float):
    """``training.train`` for a model wrapped behind an input Dropout layer: every other
    layer is shared, so the given model ends up trained and evaluates on clean inputs."""
    plain_train = training.train

    def train(model, x, **kwargs):
        inputs = keras.Input(shape=model.input_shape[1:])
        masked = keras.layers.Dropout(rate, seed=2006)(inputs)
        return plain_train(keras.Model(inputs, model(masked)), x, **kwargs)

    return train


def main(out: str, learning_rate: float | None = None, input_dropout: float = 0.0) -> None:
    if learning_rate is not None:
        h.BEST_RECIPE["learning_rate"] = learning_rate
    started = time.perf_counter()
    mnist = load_mnist()
    x, x_test = mnist.x_train, mnist.x_test
    train = train_on_masked_inputs(input_dropout) if input_dropout else training.train
    with mock.patch.object(training, "train", train):
        net, history, seconds, text, n_val = h._fit_best(x, h.FULL, 0, False)
    n_features = x.shape[1]
    reconstruct = h._keras_reconstruct(net.autoencoder)
    log = {
        "training": text + (f", input dropout {input_dropout:g}" if input_dropout else ""),
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
    args = sys.argv[1:]
    main(args[0], float(args[1]) if len(args) > 1 else None, float(args[2]) if len(args) > 2 else 0.0)
