"""When a trained network is kept over PCA (or over its own PCA start): a paired test on held-out rows."""

from __future__ import annotations

import numpy as np

# restore_best keeps trained weights over the starting ones only when their
# validation MSE is lower by more than this many standard errors (a one-sided
# paired test at about the 0.1% level); see tests/experiments/test_never_worse.py.
CLEAR_IMPROVEMENT_Z = 3.0
# The folds' decision pools every training row's held-out error (many more
# rows than a validation split), one-sided at about the 2.3% level; see
# docs/recipes.md for its false-keep and false-fallback rates.
FOLD_Z = 2.0


def paired_evidence(reference_errors, candidate_errors, z_threshold: float) -> dict:
    """Whether the candidate's per-sample errors are lower than the reference's
    by more than ``z_threshold`` standard errors of the paired differences, with the evidence."""
    reference, candidate = np.asarray(reference_errors), np.asarray(candidate_errors)
    gains = reference - candidate
    standard_error = gains.std(ddof=1) / np.sqrt(len(gains)) if len(gains) > 1 else np.inf
    z = float(gains.mean() / standard_error) if standard_error > 0 else (np.inf if gains.mean() > 0 else 0.0)
    return {
        "kept_network": bool(gains.mean() > z_threshold * standard_error),
        "gain": float(1 - candidate.mean() / reference.mean()) if reference.mean() > 0 else 0.0,
        "z": z if np.isfinite(z) else None,
        "z_threshold": z_threshold,
        "rows": int(len(gains)),
    }

