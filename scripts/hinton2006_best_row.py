"""aepca's best-recipe rows of the Hinton & Salakhutdinov (2006) reproduction alone, full
protocol (``FULL.best_epochs`` epochs), with the validation error after every epoch.

The network is trained on about 55,000 training images and its best epoch kept on the other
about 5,000 (the rows a seeded hash holds out, 1/12 of them), exactly as ``aepca reproduce hinton2006`` does; the test
set is used once, at the end, for the network alone and with its codes refined
(``FULL.refine_steps`` steps unless ``--refine-steps`` says otherwise).

    .venv/bin/python scripts/hinton2006_best_row.py OUT.json [--learning-rate LR]
        [--input-dropout RATE] [--refine-steps N ...] [--save MODEL.keras]

``--learning-rate`` replaces the recipe's peak learning rate; ``--input-dropout`` trains the
same network on randomly masked inputs while the targets stay clean (a regularisation
candidate, measured here before any recipe adopts it); several ``--refine-steps`` values
measure each.
"""

import argparse
import json
import os
import time
from unittest import mock

os.environ.setdefault("KERAS_BACKEND", "jax")  # this program's process, before Keras loads: JAX unless set

from aepca import training  # noqa: E402
from aepca.backend import import_keras  # noqa: E402
from aepca.data.mnist import load_mnist  # noqa: E402
from aepca.experiments import hinton2006 as h  # noqa: E402

keras = import_keras()


def train_on_masked_inputs(rate: float):
    """``training.train`` for a model wrapped behind an input Dropout layer: every other
    layer is shared, so the given model ends up trained and evaluates on clean inputs."""
    plain_train = training.train

    def train(model, x, **kwargs):
        inputs = keras.Input(shape=model.input_shape[1:])
        masked = keras.layers.Dropout(rate, seed=2006)(inputs)
        return plain_train(keras.Model(inputs, model(masked)), x, **kwargs)

    return train


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--input-dropout", type=float, default=0.0)
    parser.add_argument("--refine-steps", type=int, nargs="+", default=[h.FULL.refine_steps])
    parser.add_argument("--save", default=None, help="also save the trained autoencoder (.keras)")
    args = parser.parse_args(argv)
    if args.learning_rate is not None:
        h.BEST_RECIPE["learning_rate"] = args.learning_rate
    started = time.perf_counter()
    mnist = load_mnist()
    x, x_test = mnist.x_train, mnist.x_test
    train = train_on_masked_inputs(args.input_dropout) if args.input_dropout else training.train
    with mock.patch.object(training, "train", train):
        net, history, seconds, text, n_val = h._fit_best(x, h.FULL, 0, False)
    if args.save:
        net.autoencoder.save(args.save)
    n_features = x.shape[1]
    reconstruct = h._keras_reconstruct(net.autoencoder)
    log = {
        "training": text + (f", input dropout {args.input_dropout:g}" if args.input_dropout else ""),
        "validation_summed": [v * n_features for v in history["val_mse"]],
        "seconds": history["seconds"],
        "best_epoch": 1 + min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__),
        "final_test": h.summed_error(reconstruct, x_test),
        "final_train": h.summed_error(reconstruct, x),
        "fit_seconds": seconds,
        "refined": {},
    }
    print(f"best epoch {log['best_epoch']}: test {log['final_test']:.2f}, train {log['final_train']:.2f}", flush=True)
    for steps in args.refine_steps:
        refine_started = time.perf_counter()
        refined = h._refined_reconstruct(net, steps, h.BEST_RECIPE["loss"])
        log["refined"][steps] = {
            "test": h.summed_error(refined, x_test),
            "train_first_10000": h.summed_error(refined, x[: h.REFINED_TRAIN_ROWS]),
            "seconds": time.perf_counter() - refine_started,
        }
        print(f"refined codes, {steps} steps: {log['refined'][steps]}", flush=True)
    log["total_seconds"] = time.perf_counter() - started
    with open(args.out, "w") as fh:
        json.dump(log, fh)
    print(f"{log['total_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
