"""The default batch: every seed and rule of a params file, summary tables and figures.

For each seed: SFT -> warm-up -> (scores when a rule needs them) -> continuation on each rule's
selection -> evaluation against SFT on the test prompts. Then, pooled over seeds (prompts resampled
within each seed):

- WinRate of each rule against SFT, with a bootstrap 95% interval;
- the paired difference of each rule's WinRate against full data, with its interval;
- the oracle reward distribution figure of SFT, full data and the oracle selection.

Outputs: ``<run.root>/<run.name>-batch/summary.csv`` and ``per_prompt.parquet``, and the figures
under ``figures/``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tifkit.config import Params
from tifkit.io import atomic_write_text, write_parquet

NO_SCORES = {"full", "oracle", "random"}  # rules that need no score table


def _label(rule: str, keep: float) -> str:
    return rule if rule in ("full", "oracle") else f"{rule}-{keep:g}"


def run_seed(params: Params, seed: int, rules: list[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """All rules for one seed: (one row per (rule, test prompt), the score table or None)."""
    from tifkit.pipeline import continue_stage, evaluate_stage, prepare, say, selection_mask, sft_stage, warmup_stage

    ctx = prepare(params, seed)
    say(f"seed {seed}: run folder {ctx.run_dir}")
    sft_stage(ctx)
    warmup_stage(ctx)
    table = None
    rows = []
    for rule in rules:
        if rule not in NO_SCORES and table is None:
            from tifkit.pipeline import score_stage

            table = pd.read_parquet(score_stage(ctx))
        mask = selection_mask(ctx, rule, table=table)
        label = _label(rule, params.select.keep)
        res = evaluate_stage(ctx, label, continue_stage(ctx, label, mask))
        t = res.table
        rows.append(pd.DataFrame({
            "seed": seed, "rule": rule, "n_kept": int(mask.sum()), "prompt_idx": np.arange(len(t)), "prompt": t.prompt,
            "reward_policy": t.score_policy, "reward_sft": t.score_ref, "verdict": t.verdict_value,
            "len_policy": t.response_policy.str.len(), "len_sft": t.response_ref.str.len(),
        }))
        say(f"seed {seed} {label}: kept {int(mask.sum())}/{len(mask)}, reward {t.score_policy.mean():.3f} "
            f"(SFT {t.score_ref.mean():.3f}), WinRate vs SFT {res.winrate.estimate:.3f}")
    return pd.concat(rows, ignore_index=True), table


def score_diagnostics(tables: dict[int, pd.DataFrame], keep: float, select_params=None) -> pd.DataFrame:
    """analysis.score_report per seed (AUROC for mislabelled pairs, correlation with IF, overlap with
    TIF), then mean and std over seeds, with the paper's numbers beside them."""
    from tifkit.analysis import score_report

    reports = [score_report(t, keep, select_params).assign(seed=s) for s, t in tables.items()]
    r = pd.concat(reports, ignore_index=True)
    keys = ["section", "name", "statistic", "paper"]
    out = r.groupby(keys, sort=False).value.agg(["mean", "std", "count"]).reset_index()
    per_seed = r.pivot_table(index=keys, columns="seed", values="value", sort=False).reset_index()
    per_seed.columns = [c if isinstance(c, str) else f"seed{c}" for c in per_seed.columns]
    return out.merge(per_seed, on=keys)


def summarize(per_prompt: pd.DataFrame, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per rule: rewards, WinRate vs SFT and the paired difference against full data."""
    from tifkit.evaluate import bootstrap_interval, paired_bootstrap_diff

    out = []
    base = {b: per_prompt[per_prompt.rule == b].sort_values(["seed", "prompt_idx"]) for b in ("full", "random")
            if b in set(per_prompt.rule)}
    for rule, g in per_prompt.groupby("rule", sort=False):
        g = g.sort_values(["seed", "prompt_idx"])
        wr = bootstrap_interval(g.verdict.to_numpy(), n_bootstrap, seed, strata=g.seed.to_numpy())
        row = {"rule": rule, "n_seeds": g.seed.nunique(), "n_prompts": len(g), "n_kept_mean": float(
            g.groupby("seed").n_kept.first().mean()),
            "reward_sft": g.reward_sft.mean(), "reward": g.reward_policy.mean(),
            "winrate_vs_sft": wr.estimate, "winrate_lo": wr.lo, "winrate_hi": wr.hi}
        for b, bg in base.items():  # paired on the same prompts and seeds
            if rule != b:
                d = paired_bootstrap_diff(g.verdict.to_numpy(), bg.verdict.to_numpy(), n_bootstrap, seed,
                                          strata=g.seed.to_numpy())
                row.update({f"diff_vs_{b}": d.estimate, f"diff_vs_{b}_lo": d.lo, f"diff_vs_{b}_hi": d.hi})
        row["winrate_per_seed"] = json.dumps({int(s): round(float(v.verdict.mean()), 4) for s, v in g.groupby("seed")})
        out.append(row)
    return pd.DataFrame(out)


def run_batch(params: Params, seeds: list[int] | None = None, figures_dir: str | Path = "figures") -> pd.DataFrame:
    from tifkit.pipeline import say
    from tifkit.plots import reward_distribution, save, winrate_bars

    t0 = time.time()
    seeds = seeds or params.run.seeds
    rules = params.run.rules
    runs = {s: run_seed(params, s, rules) for s in seeds}
    per_prompt = pd.concat([pp for pp, _ in runs.values()], ignore_index=True)
    out_dir = Path(params.run.root) / f"{params.run.name}-batch"
    tables = {s: t for s, (_, t) in runs.items() if t is not None and "if" in t.columns}
    if tables:
        diag = score_diagnostics(tables, params.select.keep, params.select)
        diag.to_csv(Path(figures_dir) / f"{params.run.name}_score_diagnostics.csv", index=False, float_format="%.4f")
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(diag.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    write_parquet(per_prompt, out_dir / "per_prompt.parquet")
    summary = summarize(per_prompt, params.eval.n_bootstrap, params.eval.seed)
    summary.to_csv(out_dir / "summary.csv", index=False, float_format="%.4f")

    # the reward distribution figure: SFT, full data, oracle selection (and any other rule run)
    first = per_prompt[per_prompt.rule == rules[0]]
    dist = [pd.DataFrame({"label": "sft", "reward": first.reward_sft})]
    shown = [r for r in ("full", "oracle", "lossdiff-irm") if r in rules] or list(rules)[:3]
    dist += [pd.DataFrame({"label": r, "reward": per_prompt.loc[per_prompt.rule == r, "reward_policy"]})
             for r in shown]
    dist = pd.concat(dist, ignore_index=True)
    save(winrate_bars(summary, title=f"{params.run.name}: WinRate against SFT, {len(seeds)} seeds, "
                                     f"keep {params.select.keep:g} ({params.model.family})"),
         Path(figures_dir) / f"{params.run.name}_winrates.png")
    fig = reward_distribution(dist, ["sft"] + shown,
                              title=f"{params.run.name}: oracle reward on {len(first) // len(seeds)} test prompts x "
                                    f"{len(seeds)} seeds ({params.model.family})")
    fig_path = save(fig, Path(figures_dir) / f"{params.run.name}_reward_distribution.png")
    summary.to_csv(Path(figures_dir) / f"{params.run.name}_summary.csv", index=False, float_format="%.4f")
    atomic_write_text(out_dir / "batch.json", json.dumps({"seeds": seeds, "rules": rules,
                                                          "seconds": round(time.time() - t0, 1)}))
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary.drop(columns=["winrate_per_seed"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    say(f"summary: {out_dir / 'summary.csv'}; figure: {fig_path}; {time.time() - t0:.0f} s")
    return summary
