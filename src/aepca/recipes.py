"""Named training recipes: estimator settings chosen and documented as a unit.

A recipe maps the data's size (rows, columns, code size) to
:class:`aepca.Autoencoder` settings; explicit estimator arguments override
them. ``classic`` is exactly the widely copied Keras recipe
(784-512-128-2-128-512-784, ELU, linear code, sigmoid output, Adam at 1e-3,
MSE, batch 128, 5 epochs) whatever the data. ``fast`` is aepca's default,
sized to the data: on large data (MNIST) the classic network trained for
speed, on small tables a small network trained until its validation loss
stops improving, kept only when it is clearly better than PCA on held-out
rows. docs/recipes.md gives the measurements behind each setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from aepca.validation import invalid_value

DEFAULTS = dict(
    hidden=(512, 128), activation="elu", output_activation="auto", code_activation="linear", init="random",
    output_bias="zeros", epochs=5, min_steps=None, batch_size=128, learning_rate=1e-3, optimizer="adam",
    beta_2=0.999, schedule="constant", warmup_epochs=0.0, loss="mse", validation_fraction=0.0,
    restore_best=False, patience=None, anneal_epochs=None, folds=0,
)
# Settings a recipe decides; an estimator argument of None takes the recipe's.
SETTINGS = tuple(DEFAULTS)

# From this many training rows on, fast trains the classic network for speed (MNIST).
LARGE_ROWS = 20_000
# Below this many rows the keep-or-fallback decision uses K folds of all rows; from it on, a validation
# split of this share of them.
FOLD_ROWS = 5_000
FOLDS = 5
VALIDATION_SPLIT = 0.2
# Small-table networks: widths from 4x the columns, within these bounds.
MIN_WIDTH, MAX_WIDTH = 32, 256
# Small-table training: at most this many optimizer steps, stopping after
# PATIENCE_STEPS steps without a better validation loss.
MAX_STEPS = 6_000
PATIENCE_STEPS = 600


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    # (training rows, columns, code size) -> settings; missing settings take DEFAULTS.
    sized: Callable[[int, int, int], dict]
    # Whether the test split is shown to the network as validation data each
    # epoch (the classic recipe does this; selection never uses the test set).
    monitor_test: bool = False

    def settings(self, n_rows: int, n_features: int, n_components: int, **overrides) -> dict:
        """Every setting for data of this size; ``overrides`` that are not None win.

        An explicit ``epochs`` is exact: the recipe's step floor and early
        stopping apply to the recipe's own epoch count only.
        """
        settings = {**DEFAULTS, **self.sized(n_rows, n_features, n_components)}
        given = {key: value for key, value in overrides.items() if value is not None}
        if "epochs" in given:
            settings.update(min_steps=DEFAULTS["min_steps"], patience=DEFAULTS["patience"])
        settings.update(given)
        return settings


def _classic(n_rows, n_features, n_components) -> dict:
    return {}


def _fast(n_rows, n_features, n_components) -> dict:
    if n_rows >= LARGE_ROWS:
        return dict(
            init="auto", output_bias="mean", epochs=3, min_steps=1200, learning_rate=8e-3, optimizer="nadam",
            beta_2=0.95, schedule="cosine", warmup_epochs=0.2, validation_fraction=0.05, restore_best=True,
        )
    width = min(MAX_WIDTH, max(MIN_WIDTH, 1 << math.ceil(math.log2(4 * n_features))))
    batch_size = 32 if n_rows < 2_000 else 64
    # Folds of at least 2 rows: fewer folds on tables of under 2 x FOLDS rows.
    folds = min(FOLDS, max(2, n_rows // 2)) if n_rows < FOLD_ROWS else 0
    validation = 0.0 if folds else VALIDATION_SPLIT
    per_epoch = math.ceil(n_rows * (1 - (1 / folds if folds else validation)) / batch_size)
    return dict(
        hidden=(width, width // 2), init="auto", output_bias="mean", batch_size=batch_size, learning_rate=3e-3,
        epochs=max(10, math.ceil(MAX_STEPS / per_epoch)), patience=max(5, math.ceil(PATIENCE_STEPS / per_epoch)),
        validation_fraction=validation, restore_best=True, folds=folds,
    )


def _linear(n_rows, n_features, n_components) -> dict:
    return dict(
        hidden=(), activation="linear", output_activation="linear", epochs=20, learning_rate=3e-3,
        schedule="cosine", warmup_epochs=0.5,
    )


CLASSIC = Recipe(
    name="classic",
    description="The well-known Keras recipe: ELU MLP 512-128, Adam 1e-3, MSE, batch 128, 5 epochs.",
    sized=_classic,
    monitor_test=True,
)

FAST = Recipe(
    name="fast",
    description=(
        "aepca's default, sized to the data: from 20,000 rows the classic network trained 3 epochs by Nadam "
        "at 8e-3 with warm-up and cosine decay; below, a network of 4x the columns (32-256 wide) trained by "
        "Adam at 3e-3 until the validation loss stops improving. Either is kept only when clearly better "
        "than PCA on held-out rows (5 folds below 5,000 rows), else PCA itself."
    ),
    sized=_fast,
)

LINEAR = Recipe(
    name="linear",
    description="A linear autoencoder (no nonlinearity anywhere): the sanity check that it converges to PCA.",
    sized=_linear,
)

RECIPES = {recipe.name: recipe for recipe in (CLASSIC, FAST, LINEAR)}


def get_recipe(recipe: str | Recipe) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    try:
        return RECIPES[recipe]
    except (KeyError, TypeError):
        raise invalid_value("recipe", f"one of {sorted(RECIPES)} or a Recipe", f"recipe={recipe!r}") from None
