"""tifkit.stats.seeds_needed against independent slow paths: a Monte Carlo simulation of the paired
t-test's rejection rate at the returned n and at n - 1, and the normal-approximation sample size as a
lower bound."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from tifkit import TifkitError
from tifkit.stats import paired_t_power, seeds_needed


def _diffs_with(mean: float, sd: float, n: int = 6) -> np.ndarray:
    """n per-seed differences whose sample mean and sample sd (ddof=1) are exactly `mean` and `sd`."""
    z = np.random.default_rng(n).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


def _rejection_rate(es: float, n: int, alpha: float, reps: int, rng) -> float:
    """Simulate `reps` experiments of n seed-level differences ~ N(es, 1); the share the two-sided
    one-sample t-test (scipy) rejects at `alpha`."""
    x = rng.normal(es, 1.0, size=(reps, n))
    p = st.ttest_1samp(x, 0.0, axis=1).pvalue
    return float((p < alpha).mean())


@pytest.mark.parametrize("mean,sd", [(7.6, 6.4), (3.1, 3.3), (-6.7, 4.1), (0.9, 1.0)])
def test_seeds_needed_matches_simulated_t_test(mean, sd):
    d = _diffs_with(mean, sd)
    n = seeds_needed(d)
    es = abs(mean) / sd
    rng = np.random.default_rng(11)
    reps = 40000  # standard error of a rejection rate near 0.8: 0.002
    at_n = _rejection_rate(es, n, 0.05, reps, rng)
    assert at_n >= 0.8 - 0.008, (n, at_n)
    if n > 2:
        below = _rejection_rate(es, n - 1, 0.05, reps, rng)
        assert below < 0.8 + 0.008, (n, below)
    # the analytic power agrees with the simulation at n
    assert paired_t_power(es, n) == pytest.approx(at_n, abs=0.01)
    # the normal approximation ignores the t's heavier tails: a lower bound; adding z_{alpha/2}^2 / 2
    # (Guenther's correction for the t) brings it within a seed of the exact answer
    z_a, z = st.norm.ppf(0.975), st.norm.ppf(0.975) + st.norm.ppf(0.8)
    n_normal = (z / es) ** 2
    assert np.ceil(n_normal) <= n <= np.ceil(n_normal + z_a ** 2 / 2) + 1


def test_seeds_needed_grows_with_spread_and_power():
    base = seeds_needed(_diffs_with(5.0, 5.0))
    assert seeds_needed(_diffs_with(5.0, 10.0)) > base
    assert seeds_needed(_diffs_with(5.0, 5.0), power=0.9) > base
    assert seeds_needed(_diffs_with(5.0, 5.0), alpha=0.01) > base
    # the sign of the effect does not matter (two-sided), its unit does not either
    assert seeds_needed(_diffs_with(-5.0, 5.0)) == base == seeds_needed(_diffs_with(0.05, 0.05))


def test_seeds_needed_edges():
    assert seeds_needed([0.1]) is None  # one seed: no spread
    assert seeds_needed([0.1, np.nan]) is None  # NaNs are dropped first
    assert seeds_needed([1.0, -1.0, 0.0]) is None  # no effect
    assert seeds_needed([0.2, 0.2, 0.2]) == 2  # every seed agrees
    assert seeds_needed(_diffs_with(0.01, 10.0), max_seeds=50) == 51  # beyond the cap
    with pytest.raises(TifkitError):
        seeds_needed([1.0, 2.0], power=1.5)
    assert np.isnan(paired_t_power(1.0, 1))
    # power at alpha: an effect of zero is rejected at the test's level
    assert paired_t_power(0.0, 10) == pytest.approx(0.05, abs=1e-9)


# ------------------------------------------------------------------ the README's power lines (results)
def _comparisons(per_seed: dict, a="tif", b="top-if") -> pd.DataFrame:
    v = np.array(list(per_seed.values()))
    return pd.DataFrame([{"a": a, "b": b, "diff": v.mean(), "lo": v.mean() - 0.1, "hi": v.mean() + 0.1,
                          "better": int((v > 0).sum()), "n_seeds": len(v), "per_seed": json.dumps(per_seed)}])


def test_claim_lines_state_power_and_seeds_needed():
    from tifkit.results import claim_lines

    per = {str(s): x for s, x in enumerate([0.09, -0.004, 0.09, 0.10, 0.06])}
    line = claim_lines(_comparisons(per))
    need = seeds_needed(list(per.values()))
    es = np.mean(list(per.values())) / np.std(list(per.values()), ddof=1)
    assert "TIF beats classical top-IF" in line and "at 5 seeds" in line and "better in 4 of 5 seeds" in line
    assert f"80% needs {need} seeds" in line
    assert f"has {100 * paired_t_power(es, 5):.0f}% power" in line
    assert ("has enough" in line) == (need <= 5) and ("has too few" in line) == (need > 5)
    # a noisy comparison needs more seeds than the batch has
    noisy = {str(s): x for s, x in enumerate([0.14, 0.06, -0.01, 0.14, 0.04])}
    need_noisy = seeds_needed(list(noisy.values()))
    assert need_noisy > 5 and f"80% needs {need_noisy} seeds (the batch has too few)" in claim_lines(_comparisons(noisy))
    # one seed: no verdict, no power
    one = claim_lines(_comparisons({"0": 0.2}))
    assert "**no verdict** at 1 seed" in one and "one seed cannot show training noise" in one
    assert "holds" not in one


def test_rules_and_family_tables_carry_power_columns(tmp_path):
    from tifkit.batch import summarize
    from tifkit.results import families_table, power_cell, rules_table

    rng = np.random.default_rng(0)
    per_prompt = pd.concat([pd.DataFrame({
        "seed": s, "rule": r, "n_kept": 10, "prompt_idx": np.arange(20), "prompt": [f"q{i}" for i in range(20)],
        "reward_policy": rng.random(20), "reward_sft": 0.5,
        "verdict": rng.choice([0.0, 0.5, 1.0], 20, p=[0.2, 0.1, 0.7] if r == "oracle" else [0.4, 0.2, 0.4]),
        "len_policy": 3, "len_sft": 3}) for s in range(4) for r in ("full", "random", "oracle")], ignore_index=True)
    summary = summarize(per_prompt, n_bootstrap=200)
    md = rules_table(summary, keep=0.64)
    lines = md.splitlines()
    assert "seeds for 80% power vs full" in lines[0] and "seeds for 80% power vs random" in lines[0]
    assert len({ln.count("|") for ln in lines}) == 1  # every row has the header's cells
    o = summary.set_index("rule").loc["oracle"]
    want = power_cell(list(json.loads(o.diff_vs_full_per_seed).values()))
    assert want in md and "(have 4: " in want
    summary.to_csv(tmp_path / "tiny_summary.csv", index=False)
    fam = families_table(tmp_path, ["tiny"])
    assert "seeds for 80% power (oracle vs full)" in fam and want in fam
    f = summary.set_index("rule").loc["full"]
    assert power_cell(list(json.loads(f.winrate_per_seed).values()), shift=0.5) in fam
    assert power_cell([0.1]) == "one seed" and power_cell([0.1, -0.1]) == "no effect"
