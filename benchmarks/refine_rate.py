"""Code refinement's step size: the test error after N refinement steps at each Adam rate.

Networks fitted with the ``fast`` recipe (seed 0) on scikit-learn's tables and the digits, split
and scaled as ``benchmarks/tables.py`` does, at code sizes 2 and 3; with ``--model PATH`` also
saved models (e.g. the MNIST time-budget runs' ``model/`` folders), scored on the first
``--n-test`` MNIST test images. Each cell is the test MSE in the model's error space after the
given steps (0: the encoder's codes). Writes JSON and prints a markdown table.

    .venv/bin/python benchmarks/refine_rate.py [--model RUN/model:63,300 ...] [--out docs/results/refine-rate.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")  # this program's process, before Keras loads: JAX unless set

import aepca.estimator  # noqa: E402
from aepca import Autoencoder, load_model  # noqa: E402
from aepca.data import load_dataset  # noqa: E402
from aepca.refine import refine_codes  # noqa: E402
from tables import TABLES, table  # benchmarks/, beside this file  # noqa: E402

RATES = (0.01, 0.03, 0.1, 0.3, 1.0)


def errors(estimator, x_test, steps_list) -> dict:
    """{rate: {steps: test MSE in the error space}} with the estimator's refinement at each rate."""
    scaled = estimator.scaler_.transform(x_test)
    result = {}
    for rate in RATES:
        # The estimator refines through this module's name: its rate is the default we vary.
        aepca.estimator.refine_codes = functools.partial(refine_codes, learning_rate=rate)
        result[rate] = {}
        for steps in (0, *steps_list):
            estimator.set_params(refine_steps=steps)
            result[rate][steps] = float(np.mean((estimator.reconstruct_scaled(scaled) - scaled) ** 2))
    aepca.estimator.refine_codes = refine_codes
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=[], metavar="PATH:STEPS",
                        help="a saved model and the refinement steps to score it at, e.g. run/model:63,300")
    parser.add_argument("--n-test", type=int, default=2000, help="MNIST test images scoring each --model")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    cases = []
    for name in TABLES:
        data, scale = table(name, 0)
        for k in (2, 3):
            estimator = Autoencoder(k, recipe="fast", scale=scale, random_state=0).fit(data.x_train)
            cases.append({"case": f"{name} k={k}", "errors": errors(estimator, data.x_test, (100, 300))})
            print(cases[-1], flush=True)
    mnist = load_dataset("mnist").x_test[: args.n_test] if args.model else None
    for spec in args.model:
        path, _, steps = spec.rpartition(":")
        estimator = load_model(path)
        cases.append({"case": f"{path} (k={estimator.n_components}, {args.n_test} MNIST test images)",
                      "errors": errors(estimator, mnist, tuple(int(s) for s in steps.split(",")))})
        print(cases[-1], flush=True)
    header = "| case | steps | " + " | ".join(f"rate {r:g}" for r in RATES) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(RATES)]
    for case in cases:
        by_rate = case["errors"]
        for steps in by_rate[RATES[0]]:
            cells = [by_rate[rate][steps] for rate in RATES] if steps else [by_rate[RATES[0]][0]] + [None] * (len(RATES) - 1)
            best = min(c for c in cells if c is not None)
            lines.append(f"| {case['case']} | {steps} | " + " | ".join(
                "" if c is None else (f"**{c:.5g}**" if steps and c == best else f"{c:.5g}") for c in cells) + " |")
    print("\n".join(lines))
    results = {"command": "benchmarks/refine_rate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "rates": RATES, "cases": cases, "table": lines}
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
