"""The benchmark (claim 6): families x objectives x seeds x rules in worker processes, WinRate and SingleScore with hierarchical intervals."""
from __future__ import annotations


import numpy as np
import pandas as pd

from tifkit import TifkitError

from tifkit.batch import run_rule_tasks, summarize
from tifkit.stats import hierarchical_interval, paired_rules
from tifkit.workers import init_quiet_worker, quiet_params, worker_count


# -------------------------------------------------------------------------- benchmark (claim 6)
def run_variants(variants: dict, seeds, rules, workers: int | None = None) -> pd.DataFrame:
    """Every (variant, seed, rule) of a benchmark through the batch's cached stages and its worker pool
    (tifkit.batch.run_rule_tasks): first one task per (variant, seed) that trains its SFT, warm-up,
    validation model and scores and its first rule, then one task per remaining rule. `variants` is
    {name: Params} (for example "llama/dpo", "llama/slic"); `rules` is one list for all, or {name:
    list}. `workers` defaults to the first variant's run.workers (0 = one per core). Returns
    tifkit.batch's per-prompt rows with a `variant` column, in variant, seed, rule order."""
    seeds = [int(s) for s in seeds]
    if not variants or not seeds:
        raise TifkitError("run_variants needs at least one variant and one seed.")
    rules_of = {v: list(rules[v] if isinstance(rules, dict) else rules) for v in variants}
    for v, rs in rules_of.items():
        if not rs:
            raise TifkitError(f"Variant '{v}' has no rules; list at least one, e.g. [full, lossdiff-irm].")
    quiet = {v: quiet_params(p) for v, p in variants.items()}
    n_tasks = sum(len(rules_of[v]) for v in variants) * len(seeds)
    first = next(iter(variants.values()))
    w = worker_count(first, n_tasks, workers)
    # the workers' stage messages are silenced, so one bar counting the tasks stands for them
    res, _, _ = run_rule_tasks(quiet, seeds, rules_of, w, f"{len(variants)} variant(s) x {len(seeds)} seed(s)", True,
                               initializer=init_quiet_worker)
    rows = []
    for v in variants:
        for s in seeds:
            for r in rules_of[v]:
                rows.append(res[v, s, r].assign(variant=v))
    return pd.concat(rows, ignore_index=True)


def aligned_rule_rows(per_prompt: pd.DataFrame, rule: str) -> pd.DataFrame:
    """The per-prompt rows of `rule`, sorted by seed and prompt (for paired comparisons)."""
    return per_prompt[per_prompt.rule == rule].sort_values(["seed", "prompt_idx"]).reset_index(drop=True)


def paired_rule_difference(per_prompt: pd.DataFrame, a: str, b: str, column: str = "verdict",
                           n_bootstrap: int = 10000, seed: int = 0) -> dict:
    """Mean `column` of rule a minus rule b on the same prompts and seeds (WinRate with
    column="verdict", SingleScore with "reward_policy"), with tifkit.stats' hierarchical bootstrap
    interval (seeds, then prompts; with one seed, prompts only). Raises when the two rules were not
    evaluated on the same (seed, prompt) rows."""
    ga, gb = aligned_rule_rows(per_prompt, a), aligned_rule_rows(per_prompt, b)
    if len(ga) == 0 or len(gb) == 0:
        raise TifkitError(f"Rules '{a}' and '{b}' must both be in the per-prompt table to compare them.")
    d = paired_rules(ga, gb, a, b, column, n_bootstrap, seed)
    return {"a": a, "b": b, "column": column, "diff": d.estimate, "lo": d.lo, "hi": d.hi,
            "n_better": d.n_better, "n_seeds": d.n_seeds, "mean_a": float(ga[column].mean()),
            "mean_b": float(gb[column].mean())}


def benchmark_summary(per_prompt: pd.DataFrame, n_bootstrap: int = 10000, seed: int = 0) -> pd.DataFrame:
    """One row per (variant, rule): tifkit.batch.summarize's WinRate against SFT and paired
    differences against full data and random selection, plus the SingleScore (mean oracle reward
    of the policy's answers, `reward_policy`) with its hierarchical interval and its paired
    difference against full data. A table without a `variant` column is one variant ("")."""
    pp = per_prompt if "variant" in per_prompt else per_prompt.assign(variant="")
    out = []
    for v, g in pp.groupby("variant", sort=False):
        s = summarize(g.drop(columns="variant"), n_bootstrap, seed)
        ss, dv = [], []
        for rule in s.rule:
            a = aligned_rule_rows(g, rule)
            iv = hierarchical_interval(a.reward_policy.to_numpy(), a.seed.to_numpy(), n_bootstrap, seed)
            ss.append((iv.estimate, iv.lo, iv.hi))
            dv.append(paired_rule_difference(g, rule, "full", "reward_policy", n_bootstrap, seed)
                      if rule != "full" and "full" in set(g.rule) else None)
        s["single_score"], s["single_score_lo"], s["single_score_hi"] = map(list, zip(*ss))
        s["single_diff_vs_full"] = [d["diff"] if d else np.nan for d in dv]
        s["single_diff_vs_full_lo"] = [d["lo"] if d else np.nan for d in dv]
        s["single_diff_vs_full_hi"] = [d["hi"] if d else np.nan for d in dv]
        out.append(s.assign(variant=v))
    cols = ["variant"]
    return pd.concat(out, ignore_index=True).pipe(lambda d: d[cols + [c for c in d.columns if c not in cols]])
