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
        "reference_error": float(reference.mean()),
        "candidate_error": float(candidate.mean()),
        "z": z if np.isfinite(z) else None,
        "z_threshold": z_threshold,
        "rows": int(len(gains)),
    }


# A model that kept its PCA start matches PCA only to float32 round-off: a relative
# difference below this is a tie, whatever its interval (where PCA's own error is about 0, at
# a code size of the data's rank, the round-off of the values themselves: PairedErrors' roundoff).
TIE = 1e-6
# Two-sided 95% normal quantile; below BOOTSTRAP_ROWS test rows the interval is a bootstrap.
Z_95 = 1.959963984540054
BOOTSTRAP_ROWS = 50
BOOTSTRAP_RESAMPLES = 10_000


class PairedErrors:
    """Per-row errors of a candidate (``a``, one per row) and of a reference at several sizes
    (``b``, one column per size), summed as rows arrive: enough for the mean paired difference,
    the ratio of means and their 95% intervals, without holding the rows (a few rows are kept
    for a bootstrap). Sums from several processes add up (:meth:`to_array`, :meth:`merged`).
    ``roundoff``: an error so small that it is the rounding of the computation, not a model's."""

    def __init__(self, n_sizes: int, keep_rows: bool, roundoff: float = 0.0):
        self.sums = np.zeros(3 + 3 * n_sizes)  # n, sum a, sum a^2 | sum b, sum b^2, sum ab per size
        self.n_sizes = n_sizes
        self.rows = [] if keep_rows else None
        self.roundoff = roundoff

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64).reshape(len(a), self.n_sizes)
        k = self.n_sizes
        self.sums[:3] += (len(a), a.sum(), np.dot(a, a))
        self.sums[3 : 3 + k] += b.sum(axis=0)
        self.sums[3 + k : 3 + 2 * k] += np.einsum("ij,ij->j", b, b)
        self.sums[3 + 2 * k :] += a @ b
        if self.rows is not None:
            self.rows.append(np.column_stack([a, b]))

    def kept_rows(self) -> np.ndarray:
        """The rows kept for the bootstrap as one array: ``a``, then ``b`` at each size (none yet: no rows)."""
        return np.concatenate(self.rows) if self.rows else np.zeros((0, 1 + self.n_sizes))

    def interval(self, size: int, seed: int = 0) -> dict:
        """The comparison with reference size ``size``: mean difference (candidate - reference) and
        ratio (candidate / reference) with 95% intervals, and the verdict the difference's
        interval words: "below" (clearly lower), "equal within noise" or "above" (a difference
        within ``TIE`` of the reference's mean, or within ``roundoff``, is a tie, however narrow its
        interval); ``within_roundoff``: whether both mean errors are round-off."""
        n, sa, saa = self.sums[:3]
        k = self.n_sizes
        sb, sbb, sab = self.sums[3 + size], self.sums[3 + k + size], self.sums[3 + 2 * k + size]
        difference, ratio = (sa - sb) / n, sa / sb if sb > 0 else np.inf
        if self.rows is not None and n < BOOTSTRAP_ROWS:
            rows = self.kept_rows()
            picks = np.random.default_rng(seed).integers(0, len(rows), (BOOTSTRAP_RESAMPLES, len(rows)))
            a, b = rows[:, 0][picks].mean(axis=1), rows[:, 1 + size][picks].mean(axis=1)
            interval = np.quantile(a - b, [0.025, 0.975])
            with np.errstate(over="ignore", invalid="ignore"):  # PCA of every feature: errors of 0, ratios of inf
                ratio_interval = np.quantile(a / np.maximum(b, np.finfo(float).tiny), [0.025, 0.975])
            method = f"bootstrap of the {int(n)} test rows ({BOOTSTRAP_RESAMPLES} resamples)"
        else:
            # Normal intervals: the paired differences' mean, and the ratio's logarithm by the delta method,
            # so that the ratio's interval stays above 0 on skewed errors (and covers as often or more).
            spread = max(saa - 2 * sab + sbb - n * difference**2, 0.0) / (n - 1)
            half = Z_95 * np.sqrt(spread / n)
            interval = (difference - half, difference + half)
            if 0 < ratio < np.inf:
                ratio_spread = max(saa - 2 * ratio * sab + ratio**2 * sbb, 0.0) / (n - 1)
                log_half = Z_95 * np.sqrt(ratio_spread / n) / (sa / n)
                ratio_interval = (ratio * np.exp(-log_half), ratio * np.exp(log_half))
            else:
                ratio_interval = (ratio, ratio)
            method = (f"normal interval of the mean paired difference over {int(n)} test rows "
                      "(ratio: delta method on its logarithm)")
        low, high = (float(v) for v in interval)
        tie = max(TIE * sb / n, self.roundoff)
        verdict = "below" if high < 0 and difference < -tie else "above" if low > 0 and difference > tie else "equal within noise"
        return {"difference": float(difference), "interval": [low, high], "ratio": float(ratio),
                "ratio_interval": [float(v) for v in ratio_interval], "verdict": verdict, "method": method,
                "within_roundoff": bool(max(sa, sb) / n <= self.roundoff)}

    def to_array(self) -> np.ndarray:
        return self.sums.copy()

    def merged(self, totals: np.ndarray, rows: np.ndarray | None) -> PairedErrors:
        """These errors with every process's sums ``totals`` (and kept rows)."""
        merged = PairedErrors(self.n_sizes, keep_rows=rows is not None, roundoff=self.roundoff)
        merged.sums = np.asarray(totals, np.float64)
        if rows is not None:
            merged.rows = [rows]
        return merged
