"""Every interval tifkit reports: bootstraps over prompts, the hierarchical bootstrap over seeds then
prompts, Student-t intervals over seeds, and paired comparisons of rules.

- over prompts (one trained model): `bootstrap_interval` (optionally within strata) and
  `paired_bootstrap_diff`, behind evaluate.winrate / single_score and report.pooled_winrates;
- over seeds and prompts: `hierarchical_interval`, `paired_hierarchical_diff`, and
  `rule_comparisons` (every pair of rules of a batch's per-prompt table), behind the batch summary
  and tifkit.results' committed comparisons;
- over per-seed statistics: `t_interval` (experiments.decisions' score-based claims);
- power over seeds: `seeds_needed` (the seeds a paired comparison needs for 80% power at its observed
  effect and seed-to-seed spread) and `paired_t_power`, behind the README's power lines.

Intervals that include training noise: a hierarchical bootstrap over seeds, then prompts.

A WinRate measured on one trained model varies with the prompts it is judged on; across seeds it
also varies with the model (initialization, batch order, world). Resampling prompts within each
seed treats every trained model as fixed, and with a few seeds the models differ far more than the
prompts do. `hierarchical_interval` resamples both levels: draw seeds with replacement, then
prompts with replacement within each drawn seed, and take the mean of the per-seed means.

With few seeds a plain percentile interval is too narrow (the bootstrap spread of a mean of n
units is sqrt((n-1)/n) of its standard error, and its tails are normal rather than Student's t).
The interval therefore uses the expanded percentile bootstrap (Hesterberg, 2015): the percentiles
are taken at ``2 Phi(-sqrt(n/(n-1)) t_{n-1, 1-alpha/2})`` instead of ``alpha``, where n is the
number of seeds, so that the interval matches a t interval over the seed means when the between-seed
variation dominates. tests/test_stats.py checks its coverage on simulated experiments with a known
between-seed variance.
"""
from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as _st

from tifkit import TifkitError


# ------------------------------------------------------------------------------------ over prompts
class Interval(NamedTuple):
    """A point estimate with a bootstrap interval; unpacks as `(estimate, lo, hi)`."""

    estimate: float
    lo: float
    hi: float


def bootstrap_means(values: np.ndarray, n_bootstrap: int, seed: int, strata: np.ndarray | None = None) -> np.ndarray:
    """Means of `n_bootstrap` resamples (with replacement, within each stratum if given)."""
    rng = np.random.default_rng(seed)
    if strata is None:
        strata = np.zeros(len(values), dtype=int)
    total = np.zeros(n_bootstrap)
    for s in sorted(set(strata.tolist()), key=str):
        group = values[strata == s]
        total += group[rng.integers(0, len(group), size=(n_bootstrap, len(group)))].sum(axis=1)
    return total / len(values)


def bootstrap_interval(values, n_bootstrap: int = 1000, seed: int = 0, ci: float = 0.95,
                       strata=None) -> Interval:
    """Mean of the finite `values` and its percentile bootstrap interval (NaN rows dropped)."""
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values)
    strata = None if strata is None else np.asarray(strata)[keep]
    values = values[keep]
    if len(values) == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    means = bootstrap_means(values, n_bootstrap, seed, strata)
    lo, hi = np.percentile(means, [50 * (1 - ci), 50 * (1 + ci)])
    return Interval(float(values.mean()), float(lo), float(hi))


def paired_bootstrap_diff(scores_a, scores_b, n_bootstrap: int = 1000, seed: int = 0,
                          ci: float = 0.95, strata=None) -> Interval:
    """Mean(scores_a) - mean(scores_b) on the same prompts, with a paired bootstrap interval.

    `scores_*` are per-prompt values (e.g. `verdict_values` of two policies against the same
    reference); a prompt missing (NaN) in either is dropped. With `strata` (e.g. the seed of each
    row) prompts are resampled within each stratum.
    """
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape:
        raise TifkitError(f"Paired scores have different lengths ({len(a)} vs {len(b)}); pass "
                          "both policies' scores on the same prompts.")
    return bootstrap_interval(a - b, n_bootstrap, seed, ci, strata)


# ------------------------------------------------------------------------------ over per-seed values
def t_interval(values, ci: float = 0.95) -> tuple[float, float, float]:
    """Mean of `values` (one per seed; NaNs dropped) with a Student-t interval; (mean, nan, nan)
    for a single value."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    return t_interval_from_moments(m, v.std(ddof=1), len(v), ci)


def t_interval_from_moments(mean: float, sd: float, n: int, ci: float = 0.95) -> tuple[float, float, float]:
    """`t_interval` from a sample's mean, standard deviation (ddof=1) and size, for tables that keep only
    those (an aggregated score report); (mean, nan, nan) when n < 2."""
    if n < 2:
        return float(mean), float("nan"), float("nan")
    h = float(_st.t.ppf(0.5 + ci / 2, n - 1) * sd / np.sqrt(n))
    return float(mean), mean - h, mean + h


# --------------------------------------------------------------------------- over seeds, then prompts
class SeedInterval(NamedTuple):
    """A mean over seeds with its interval; unpacks as ``(estimate, lo, hi)`` first."""

    estimate: float
    lo: float
    hi: float
    per_seed: dict  # {seed: the seed's own mean}
    n_better: int  # seeds whose mean is > 0 (for differences)
    n_seeds: int


def expanded_alpha(n_units: int, ci: float = 0.95) -> float:
    """The two-sided tail mass at which the expanded percentile bootstrap reads its percentiles."""
    alpha = 1.0 - ci
    if n_units < 2:
        return alpha
    t = _st.t.ppf(1 - alpha / 2, n_units - 1)
    return float(2 * _st.norm.cdf(-np.sqrt(n_units / (n_units - 1)) * t))


def _groups(values, groups) -> tuple[list, list[np.ndarray]]:
    values = np.asarray(values, dtype=float)
    groups = np.asarray(groups)
    if values.shape != groups.shape or values.ndim != 1:
        raise TifkitError(f"hierarchical_interval needs one group label per value; got {values.shape} values and "
                          f"{groups.shape} labels.")
    keep = np.isfinite(values)  # judge errors (NaN) are left out, as in evaluate.bootstrap_interval
    values, groups = values[keep], groups[keep]
    labels = list(dict.fromkeys(groups.tolist()))  # first-seen order
    return labels, [values[groups == g] for g in labels]


def hierarchical_means(values, groups, n_bootstrap: int = 4000, seed: int = 0) -> np.ndarray:
    """`n_bootstrap` bootstrap replicates of the mean of per-group means: groups (seeds) drawn with
    replacement, then values (prompts) drawn with replacement within each drawn group.

    Vectorised: a replicate's j-th drawn group contributes an independent within-group resample
    mean, so each group's resample means are drawn in one block and handed out in order."""
    labels, vals = _groups(values, groups)
    n = len(labels)
    if n == 0:
        return np.full(n_bootstrap, np.nan)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, n, size=(n_bootstrap, n))
    seed_means = np.empty((n_bootstrap, n))
    for g, v in enumerate(vals):
        where = pick == g
        k = int(where.sum())
        if k:
            idx = rng.integers(0, len(v), size=(k, len(v)))
            seed_means[where] = v[idx].mean(axis=1)
    return seed_means.mean(axis=1)


def hierarchical_interval(values, groups, n_bootstrap: int = 4000, seed: int = 0, ci: float = 0.95,
                          expand: bool = True) -> SeedInterval:
    """Mean of per-group means (each seed weighs the same) with a hierarchical bootstrap interval.

    `values` are per-prompt numbers (a verdict value, or the paired difference of two rules'
    verdicts on the same prompt), `groups` the seed of each. `expand` (default) widens the
    percentiles for few seeds (module docstring); with one seed the interval is over prompts only.
    `n_better` counts the seeds whose own mean is above zero."""
    labels, vals = _groups(values, groups)
    if not labels:
        nan = float("nan")
        return SeedInterval(nan, nan, nan, {}, 0, 0)
    per_seed = {lab: float(v.mean()) for lab, v in zip(labels, vals)}
    est = float(np.mean(list(per_seed.values())))
    means = hierarchical_means(values, groups, n_bootstrap, seed)
    a = expanded_alpha(len(labels), ci) if expand else 1.0 - ci
    lo, hi = np.quantile(means, [a / 2, 1 - a / 2])
    return SeedInterval(est, float(lo), float(hi), per_seed, int(sum(m > 0 for m in per_seed.values())), len(labels))


def paired_hierarchical_diff(a, b, groups, n_bootstrap: int = 4000, seed: int = 0, ci: float = 0.95,
                             expand: bool = True) -> SeedInterval:
    """Mean(a) - mean(b) on the same prompts and seeds (rows aligned), with `hierarchical_interval`."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise TifkitError(f"Paired scores have different lengths ({len(a)} vs {len(b)}); pass both rules' "
                          "verdicts on the same prompts and seeds.")
    return hierarchical_interval(a - b, groups, n_bootstrap, seed, ci, expand)


def paired_rules(ga: pd.DataFrame, gb: pd.DataFrame, a: str, b: str, column: str = "verdict",
                 n_bootstrap: int = 10000, seed: int = 0) -> SeedInterval:
    """Rule a minus rule b: `paired_hierarchical_diff` of `column` over the per-prompt rows `ga`, `gb`
    of the two rules, each sorted by (seed, prompt_idx). Raises when the rows are not the same
    (seed, prompt) pairs, the one check every paired comparison of rules goes through."""
    same = len(ga) == len(gb) and (ga.seed.to_numpy() == gb.seed.to_numpy()).all() and (
        ga.prompt_idx.to_numpy() == gb.prompt_idx.to_numpy()).all()
    if not same:
        raise TifkitError(f"Rules '{a}' and '{b}' were evaluated on different prompts or seeds; run both on every "
                          "seed (rerun the batch).")
    return paired_hierarchical_diff(ga[column].to_numpy(), gb[column].to_numpy(), ga.seed.to_numpy(), n_bootstrap, seed)


def rule_comparisons(per_prompt: pd.DataFrame, extra_pairs=(), n_bootstrap: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Paired difference of every ordered pair of rules (a, b) of a batch's per-prompt table (columns
    rule, seed, prompt_idx, verdict), a before b in run order, then the `extra_pairs` (a, b) whose
    rules were both run, in their order; `paired_hierarchical_diff` intervals. One row per pair:
    a, b, diff, lo, hi, better (seeds where a is better), n_seeds, per_seed (JSON)."""
    rules = list(dict.fromkeys(per_prompt.rule))
    by = {r: g.sort_values(["seed", "prompt_idx"]) for r, g in per_prompt.groupby("rule", sort=False)}
    pairs = [(a, b) for i, a in enumerate(rules) for b in rules[i + 1:]]
    pairs += [(a, b) for a, b in extra_pairs if a in by and b in by and (a, b) not in pairs]
    rows = []
    for a, b in pairs:
        d = paired_rules(by[a], by[b], a, b, "verdict", n_bootstrap, seed)
        rows.append({"a": a, "b": b, "diff": d.estimate, "lo": d.lo, "hi": d.hi, "better": d.n_better,
                     "n_seeds": d.n_seeds, "per_seed": json.dumps({str(k): round(v, 4) for k, v in d.per_seed.items()})})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------- power over seeds
def paired_t_power(effect_size: float, n: int, alpha: float = 0.05) -> float:
    """Power of a two-sided one-sample (paired) t-test at level `alpha` with `n` units when the true
    mean is `effect_size` standard deviations from zero: P(|T| > t_crit), T noncentral t with n - 1
    degrees of freedom and noncentrality effect_size * sqrt(n). NaN for n < 2."""
    if n < 2 or not np.isfinite(effect_size):
        return float("nan")
    t = _st.t.ppf(1 - alpha / 2, n - 1)
    nc = abs(float(effect_size)) * np.sqrt(n)
    return float(_st.nct.sf(t, n - 1, nc) + _st.nct.cdf(-t, n - 1, nc))


def seeds_needed(per_seed_diffs, power: float = 0.8, alpha: float = 0.05, max_seeds: int = 10000) -> int | None:
    """Seeds a paired comparison needs to detect its observed mean effect with probability `power`,
    taking the observed mean and seed-to-seed spread of `per_seed_diffs` (one difference per seed;
    NaNs dropped) as the truth: the smallest n >= 2 whose two-sided paired t-test over seed-level
    differences at level `alpha` has `paired_t_power(mean / sd, n, alpha) >= power`.

    None when there is nothing to plan for: fewer than two seeds (no spread) or a zero mean effect;
    2 when every seed agrees exactly (zero spread, non-zero effect); max_seeds + 1 when even
    max_seeds seeds are not enough. The batch's intervals are hierarchical bootstraps (seeds, then
    prompts); this t-test over seed means is the planning approximation beside them."""
    d = np.asarray(per_seed_diffs, dtype=float)
    d = d[np.isfinite(d)]
    if not 0 < power < 1 or not 0 < alpha < 1:
        raise TifkitError(f"seeds_needed needs 0 < power < 1 and 0 < alpha < 1; got power={power}, alpha={alpha}.")
    if d.size < 2:
        return None
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if mean == 0.0:
        return None
    if sd == 0.0:
        return 2
    es = abs(mean) / sd
    lo, hi = 2, 2
    while paired_t_power(es, hi, alpha) < power:  # doubling: an n that reaches it ...
        if hi > max_seeds:
            return max_seeds + 1
        lo, hi = hi + 1, hi * 2
    while lo < hi:  # ... then bisection: power grows with n, so the smallest such n
        mid = (lo + hi) // 2
        if paired_t_power(es, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi if hi <= max_seeds else max_seeds + 1
