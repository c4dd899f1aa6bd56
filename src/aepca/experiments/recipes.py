"""Named training recipes: estimator settings chosen and documented as a unit.

``classic`` is exactly the widely copied Keras recipe (784-512-128-2-128-512-784,
ELU, linear code, sigmoid output, Adam at 1e-3, MSE, batch 128, 5 epochs).
``fast`` is aepca's own, chosen by measurement to reach the classic recipe's
quality in a fraction of its time: see docs/recipes.md for the measurements
behind each setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    params: dict = field(default_factory=dict)
    # Whether the test split is shown to the network as validation data each
    # epoch (the classic recipe does this; selection never uses the test set).
    monitor_test: bool = False

    def estimator_params(self, **overrides) -> dict:
        params = dict(self.params)
        params.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("epochs") is not None and overrides.get("min_steps") is None:
            # An explicit epoch count (e.g. --epochs) is exact: the recipe's step floor
            # only stretches the recipe's own default.
            params.pop("min_steps", None)
        return params


CLASSIC = Recipe(
    name="classic",
    description="The well-known Keras recipe: ELU MLP 512-128, Adam 1e-3, MSE, batch 128, 5 epochs.",
    params=dict(
        hidden=(512, 128), activation="elu", output_activation="auto", init="random",
        epochs=5, batch_size=128, learning_rate=1e-3, optimizer="adam", schedule="constant", loss="mse",
    ),
    monitor_test=True,
)

FAST = Recipe(
    name="fast",
    description=(
        "aepca's measured default: the classic network trained 3 epochs by Nadam (beta_2 0.95) at "
        "an 8x learning rate with warm-up and cosine decay, the output starting at the data mean, "
        "best weights kept on a validation split, never worse than PCA (init='auto')."
    ),
    params=dict(
        hidden=(512, 128), activation="elu", output_activation="auto", init="auto", output_bias="mean",
        epochs=3, min_steps=1200, batch_size=128, learning_rate=8e-3, optimizer="nadam", beta_2=0.95,
        schedule="cosine", warmup_epochs=0.2, loss="mse", validation_fraction=0.05, restore_best=True,
    ),
)

LINEAR = Recipe(
    name="linear",
    description="A linear autoencoder (no nonlinearity anywhere): the sanity check that it converges to PCA.",
    params=dict(
        hidden=(), activation="linear", output_activation="linear", init="random",
        epochs=20, batch_size=128, learning_rate=3e-3, optimizer="adam", schedule="cosine",
        warmup_epochs=0.5, loss="mse",
    ),
)

RECIPES = {recipe.name: recipe for recipe in (CLASSIC, FAST, LINEAR)}


def get_recipe(recipe: str | Recipe) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    try:
        return RECIPES[recipe]
    except KeyError:
        raise ValueError(
            f"Received an invalid value for recipe, expected one of {sorted(RECIPES)}. "
            f"Received: recipe={recipe!r}"
        ) from None
