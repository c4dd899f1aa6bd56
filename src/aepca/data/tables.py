"""scikit-learn's bundled tables: wine, breast cancer and diabetes, small real tables that load offline.

Tables of mixed units (aepca's ``--scale auto`` standardises wine and breast cancer), split 80/20
as the digits are, so ``aepca compare --dataset wine`` tries the tool on a table without a file.
"""

from __future__ import annotations

import numpy as np

from aepca.data._dataset import Dataset
from aepca.data.readers import split_dataset

# scikit-learn's loader, the features' units and the data's origin (labels: a class, or diabetes' progression).
TABLES = {
    "wine": ("load_wine", "the chemical analyses' own units (alcohol in %, magnesium in mg/l, ...)",
             "the UCI Wine data (Forina et al., 1988): 178 wines of three cultivars grown in one region of Italy, "
             "13 constituents found by chemical analysis"),
    "breast_cancer": ("load_breast_cancer", "the cell nuclei's measures (radius, texture, area, ...)",
                      "the UCI Breast Cancer Wisconsin (Diagnostic) data (Street, Wolberg & Mangasarian, 1993): "
                      "569 fine-needle aspirates, 30 features of the cell nuclei imaged in each"),
    "diabetes": ("load_diabetes", "scikit-learn's units: each column centred and scaled to unit norm over the 442 patients",
                 "the diabetes data of Efron, Hastie, Johnstone & Tibshirani (2004): age, sex, body mass index, "
                 "blood pressure and six blood serum measures of 442 patients"),
}


def sklearn_table(name: str, seed: int = 0) -> Dataset:
    """scikit-learn's table ``name`` (one of :data:`TABLES`), split 80/20 by a shuffle seeded with ``seed``,
    with its column names and its label (a class name, or diabetes' disease progression a year later)."""
    import sklearn.datasets  # here: only these data sets need it

    loader, units, provenance = TABLES[name]
    bunch = getattr(sklearn.datasets, loader)()
    names = getattr(bunch, "target_names", None)
    y = np.asarray(names)[bunch.target] if names is not None else bunch.target.astype(np.float32)
    return split_dataset(name, bunch.data, y, seed, feature_names=tuple(map(str, bunch.feature_names)),
                         notes={"units": units, "provenance": f"scikit-learn's bundled copy of {provenance}"})
