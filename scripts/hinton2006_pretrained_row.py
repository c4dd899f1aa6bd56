"""The full-protocol RBM-pretrained 784-1000-500-250-30 row of Hinton & Salakhutdinov
(2006) alone, with the test error recorded after every fine-tuning epoch.

``aepca reproduce hinton2006`` runs every row (hours on a 2-core CPU); this script
runs only the row the paper's 3.00 belongs to, with the same protocol (four RBMs,
50 CD-1 epochs each; 200 epochs of Adam fine-tuning on cross-entropy, batch 1,000)
and code (``aepca.experiments.hinton2006``). The test set is only monitored: nothing
is selected on it, and the reported figure is the error after the last epoch.

    .venv/bin/python scripts/hinton2006_pretrained_row.py runs/pretrained_full.json
"""

import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")  # this program's process, before Keras loads: JAX unless set

from aepca.data.mnist import load_mnist  # noqa: E402
from aepca.experiments import hinton2006 as h  # noqa: E402
from aepca.rbm import unroll  # noqa: E402
from aepca.training import train  # noqa: E402


def main(out: str) -> None:
    started = time.perf_counter()
    mnist = load_mnist()
    x, x_test = mnist.x_train, mnist.x_test
    layers, layer_seconds = h._pretrain(x, h.MNIST_SIZES, h.FULL, 0, False)
    print("RBM layers done after (s, cumulative):", [round(s) for s in layer_seconds], flush=True)
    net = unroll(layers)
    log = {"protocol": h.FULL.to_dict(), "rbm_seconds": layer_seconds, "epochs": []}

    def record(epoch, history, _snapshot):
        log["epochs"].append({"epoch": epoch, "loss": history["loss"][-1],
                              "test_summed": history["val_mse"][-1] * x.shape[1],
                              "seconds": history["seconds"][-1]})
        print(log["epochs"][-1], flush=True)
        with open(out, "w") as fh:
            json.dump(log, fh)

    train(net.autoencoder, x, x_val=x_test, config=h._finetune_config(h.FULL, 0, h.FULL.finetune_epochs),
          callbacks=(record,))
    reconstruct = h._keras_reconstruct(net.autoencoder)
    log["final_test"] = h.summed_error(reconstruct, x_test)
    log["final_train"] = h.summed_error(reconstruct, x)
    log["total_seconds"] = time.perf_counter() - started
    with open(out, "w") as fh:
        json.dump(log, fh)
    print(f"final: test {log['final_test']:.2f}, train {log['final_train']:.2f}, "
          f"{log['total_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
