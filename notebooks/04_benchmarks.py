# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Benchmarks: every selection rule at the paper's budget, DPO and SLiC, WinRate and SingleScore
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tifkit/tifkit/blob/main/notebooks/04_benchmarks.ipynb)
#
# The paper ([arXiv 2510.13212](https://arxiv.org/abs/2510.13212)) ends with a benchmark: keep 64% of
# the preference pairs by some rule, continue DPO from the warm-up model on what was kept, and ask a
# judge whether the result answers better than the SFT model. Its rule, **LossDiff-IRM**, keeps a pair
# when both of its cheap scores sit in the middle of their distributions,
#
# $$ \text{keep}(d) \iff q_{1/2-w}(\text{LossDiff}) \le \text{LossDiff}(d) \le q_{1/2+w}(\text{LossDiff})
#    \ \wedge\ q_{1/2-w}(\text{IRM}) \le \text{IRM}(d) \le q_{1/2+w}(\text{IRM}), $$
#
# with the half-width $w$ chosen so that 64% of the pairs pass both. The paper reports that this beats
# training on everything and beats the two filters practitioners use (a reward model's margin and the
# annotators' score gap), on four benchmarks and for several model families.
#
# **What you will see.** Every rule trained with the same budget and schedule; what each rule kept
# (how many mislabelled pairs it let through); the WinRate against SFT computed from the per-prompt
# verdicts, with its bootstrap interval; the **SingleScore** (the mean oracle reward of the answers)
# beside it; the same benchmark with the **SLiC** objective instead of DPO; and the paper's table
# beside ours, where only the *ordering* of the rules can be compared.
#
# **Claims tested** (docs/METHOD.md): **claim 6**, LossDiff-IRM at 50-64% of the data beats full
# data and the filters on WinRate.
#
# **Hardware and time.** CPU only; the rules run in parallel worker processes, one per core.
# `scale = None` runs the default scale: the tiny Llama-style model of `params/tiny.yaml` (2,000
# training pairs, one seed), all ten rules, DPO and SLiC (20 trained models): 2 min 45 s (165 s) on
# 2 CPU cores from an empty cache (measured on the development machine at load average 2-4, i.e.
# little besides this notebook; 12 minutes when other jobs kept the load at 12).
# Seconds once the stages are cached (the batch of `make reproduce` caches the DPO half). The full
# scale (`scale = "full"`, run by `make reproduce` after the batch) uses every seed of
# `run.study_seeds` (the first five of the batch's seeds): DPO with every rule (the batch's cached models) and SLiC with the rules claim 6 names plus
# random (full data, random, LossDiff-IRM and the two filters): 5 min 40 s (337 s) at five seeds
# from an empty cache, the DPO half included (load average about 2), less after the batch. The other
# tiny families (Qwen-,
# Pythia- and GPT-2-style) are left out of the default runs to keep `make reproduce` within its
# budget; get them with `variants`, e.g. `["qwen/dpo", "qwen/slic"]` (about the same time as the
# default), or every family at once with `variants = ["llama/dpo", "qwen/dpo", "pythia/dpo",
# "gpt2/dpo"]`.

# %% tags=["parameters"]
scale = None                  # None: $TIFKIT_NOTEBOOK_SCALE, else "default" (one seed, real size); "ci": toy; "full": all seeds
params_file = "tiny.yaml"     # a params file shipped with tifkit, or a path to your own
overrides = []                # extra parameter overrides, strings as for the CLI's --set (section.key, an equals sign, value)
seeds = None                  # None: run.seed (default and ci scale) or run.study_seeds (full scale)
run_root = None               # None: the params file's run.root (runs/), or runs/nb-ci at ci scale
figures_dir = None            # None: <run root>/figures; the papermill batch passes figures/
variants = None               # "family/objective" strings; None: llama/dpo and llama/slic
rules = None                  # rules of the first variant; None: all ten
other_rules = None            # rules of the other variants; None: all ten (default, ci), or full, random, lossdiff-irm, rm-margin, annotation-gap (full scale)
keep = 0.64                   # the budget: share of the training pairs every rule keeps
workers = None                # worker processes; None: run.workers (0: one per CPU core), at ci scale none (this process)

# %%
# On Colab only: install tifkit at one release with its `colab` extra (about a minute); anywhere else this
# does nothing. Colab keeps its own torch, numpy, pandas and kernel (tifkit accepts their versions), and no
# notebook server or test runner comes along. TIFKIT_REF: the release tag (or a commit) to install; if your
# repository lives at another URL (a fork, a mirror), set TIFKIT_REPO to that URL.
import subprocess
import sys

TIFKIT_REPO = "https://github.com/tifkit/tifkit"
TIFKIT_REF = "v0.1.0"
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"tifkit[colab] @ git+{TIFKIT_REPO}@{TIFKIT_REF}"],
                   check=True)

# %%

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display
from scipy import stats

from tifkit import conclusions as C
from tifkit import experiments as E
from tifkit import notebooks as N
from tifkit import plots
from tifkit import results as R
from tifkit.report import PAPER_WINRATES

nb = N.start("04_benchmarks", scale, params_file, overrides, seeds, run_root, figures_dir)
p = nb.p

# %% [markdown]
# ## 1. The rules, at one budget
#
# Every rule keeps $k = 0.64\,n$ of the $n$ training pairs (except full data, and the oracle, which
# keeps exactly the correctly labelled pairs: an upper reference no real rule can reach), and every
# kept set gets the same two epochs of DPO from the warm-up model $\theta$.
#
# | rule | keeps the pairs whose ... |
# |---|---|
# | `full` | (all pairs) |
# | `random` | (a random 64%) |
# | `top-if` | influence $\mathrm{IF}(d) = \langle\nabla\ell(\theta;d), g_{val}\rangle$ is largest (classical) |
# | `tif` | IF lies in the middle 64% (truncated IF; exact, expensive) |
# | `lossdiff`, `irm` | LossDiff, or IRM, lies in its middle 64% |
# | `lossdiff-irm` | LossDiff and IRM both lie in a middle band (the paper's rule) |
# | `rm-margin` | a reward model's margin $r(x,y_w)-r(x,y_l)$ is largest |
# | `annotation-gap` | the annotators' score gap is largest (the paper's "GPT-4 filter") |
# | `oracle` | label agrees with the hidden oracle (world only) |
#
# The cell below builds the parameters of each *variant* (a model family and an objective) and
# trains and evaluates every (variant, seed, rule) in worker processes through the cached stages of
# `tifkit.pipeline` (SFT, warm-up, validation model, scores, continuation, evaluation).

# %%
if variants is None:
    variants = [f"{p.model.family}/dpo", f"{p.model.family}/slic"]
rules = list(rules or E.bench_rules())
if other_rules is None:
    other_rules = ["full", "random", "lossdiff-irm", "rm-margin", "annotation-gap"] if nb.scale == "full" else rules
other_rules = list(other_rules)
var_params, rules_of = {}, {}
for v in variants:
    family, objective = v.split("/")
    var_params[v] = N.family_params(params_file, [family], scale=nb.scale, run_root=run_root,
                                    overrides=list(overrides) + [f"train.objective={objective}",
                                                                 f"select.keep={keep}"])[family]
    rules_of[v] = rules if v == variants[0] else other_rules
for v in variants:
    print(f"{v:12} {len(rules_of[v])} rules: {', '.join(rules_of[v])}")

per_prompt = E.run_variants(var_params, nb.seeds, rules_of, workers)
print(f"{per_prompt.groupby(['variant', 'seed', 'rule']).ngroups} trained models, "
      f"{per_prompt.prompt_idx.nunique()} test prompts each")

# %% [markdown]
# ## 2. What each rule kept
#
# The world knows which labels are wrong (`gt_flipped`: the forced flips, most of them written by the
# verbosity-biased annotator, plus a few Bradley-Terry flips on close pairs; the table prints the share). No rule may read that column; we read it here only to see what
# each rule let through: the share of mislabelled pairs among the kept ones,
# $\frac{|\{d \in S : d \text{ mislabelled}\}|}{|S|}$. A rule that lowers it cleans the data.
# `tifkit.select.select(table, rule=..., keep=...)` returns the mask a rule keeps from a score table.

# %%
from tifkit.pipeline import prepare, score_stage
from tifkit.select import select

v0 = variants[0]
ctx = prepare(var_params[v0], nb.seeds[0])
table = pd.read_parquet(score_stage(ctx))  # cached: the run above computed it
kept = []
for rule in rules_of[v0]:
    if rule == "full":
        mask = np.ones(len(table), dtype=bool)
    elif rule == "oracle":
        mask = ~table.gt_flipped.to_numpy(dtype=bool)
    else:
        mask = select(table, var_params[v0].select, rule=rule, keep=keep).mask
    kept.append({"rule": rule, "kept": int(mask.sum()), "share kept": mask.mean(),
                 "mislabelled among kept": table.gt_flipped.to_numpy()[mask].mean()})
kept = pd.DataFrame(kept).set_index("rule")
print(f"{v0}, seed {nb.seeds[0]}: {len(table)} pairs, {table.gt_flipped.mean():.1%} mislabelled")
kept.sort_values("mislabelled among kept")

# %% [markdown]
# ## 3. WinRate against SFT, with an interval
#
# On each test prompt $x_i$ the trained policy and the SFT model answer greedily and the oracle judges
# the two answers: $v_i = 1$ (win), $0.5$ (tie), $0$ (loss). The WinRate is the mean,
# $\mathrm{WR} = \frac1m\sum_i v_i$ (0.5 = no better than SFT). Its 95% interval comes from the
# bootstrap: resample the $m$ prompts with replacement many times and take the 2.5% and 97.5%
# percentiles of the resampled means. With several seeds the seeds are resampled first, then the
# prompts within each (`tifkit.stats.hierarchical_interval`), because the trained models differ
# from seed to seed more than the prompts do. The difference of two rules is taken **paired**, on
# the same prompts: $\Delta = \frac1m\sum_i (v_i^{A} - v_i^{B})$.
#
# Here is the WinRate and a plain prompt bootstrap written out for one rule, then the same numbers
# from `tifkit.experiments.benchmark_summary`, which every table below uses:

# %%
g = per_prompt[(per_prompt.variant == v0) & (per_prompt.rule == "lossdiff-irm") & (per_prompt.seed == nb.seeds[0])]
v = g.verdict.to_numpy()
rng = np.random.default_rng(0)
boot = v[rng.integers(0, len(v), size=(4000, len(v)))].mean(axis=1)
print(f"{v0} lossdiff-irm, seed {nb.seeds[0]}: wins {(v == 1).sum()}, ties {(v == 0.5).sum()}, losses {(v == 0).sum()} "
      f"-> WinRate {v.mean():.3f}, prompt bootstrap [{np.quantile(boot, 0.025):.3f}, {np.quantile(boot, 0.975):.3f}]")

summary = E.benchmark_summary(per_prompt, n_bootstrap=p.run.n_bootstrap, seed=p.eval.seed)
check = per_prompt.groupby(["variant", "rule", "seed"], sort=False).verdict.mean().groupby(["variant", "rule"]).mean()
assert np.allclose(summary.set_index(["variant", "rule"]).winrate_vs_sft, check.loc[summary.set_index(["variant", "rule"]).index])


def interval(est, lo, hi, f=100.0):
    return f"{f * est:.1f} [{f * lo:.1f}, {f * hi:.1f}]" if np.isfinite(est) else ""


show = summary.assign(**{
    "WinRate %": [interval(*r) for r in summary[["winrate_vs_sft", "winrate_lo", "winrate_hi"]].to_numpy()],
    "vs full (points)": [interval(*r) for r in summary[["diff_vs_full", "diff_vs_full_lo", "diff_vs_full_hi"]].to_numpy()],
    "vs random (points)": [interval(*r) for r in summary[["diff_vs_random", "diff_vs_random_lo", "diff_vs_random_hi"]].to_numpy()],
    "kept": summary.n_kept_mean.round().astype(int)})
show.set_index(["variant", "rule"])[["kept", "WinRate %", "vs full (points)", "vs random (points)"]]

# %%
fig = plots.plot_benchmark({v: s for v, s in summary.groupby("variant", sort=False)},
                           title=f"Every rule at keep {keep:g}: {nb.scale} scale, seeds {nb.seeds}")
nb.figure(fig, "benchmark")

# %% [markdown]
# **How to read it.** Left: each rule's WinRate against SFT (bars from 0) with its 95% interval; the
# dashed line is 0.5 (no better than SFT), the dotted line full data. Right: the same rules minus full
# data, paired on the same prompts, in WinRate points on an axis fitted to the differences: a bar
# whose interval clears 0 beats full data at this scale.

# %% [markdown]
# ## 4. SingleScore beside WinRate
#
# A WinRate only says *whether* the policy's answer beats the SFT answer. The SingleScore is the judge's
# absolute score of the policy's answers, here the mean oracle reward
# $\mathrm{SS} = \frac1m\sum_i r^*(x_i, \pi(x_i))$ (1.0 = exactly sorted, no sign-off), with the same
# kind of interval. If the two metrics rank the rules alike, the WinRate is not an artefact of the
# pairwise judge.

# %%
ss = summary.assign(**{
    "SingleScore": [f"{r[0]:.3f} [{r[1]:.3f}, {r[2]:.3f}]" for r in summary[["single_score", "single_score_lo", "single_score_hi"]].to_numpy()],
    "SingleScore vs full": [f"{r[0]:+.3f} [{r[1]:+.3f}, {r[2]:+.3f}]" if np.isfinite(r[0]) else ""
                            for r in summary[["single_diff_vs_full", "single_diff_vs_full_lo",
                                              "single_diff_vs_full_hi"]].to_numpy()],
    "SFT reward": summary.reward_sft.round(3)})
rank_agree = {v: stats.spearmanr(g.winrate_vs_sft, g.single_score).statistic for v, g in summary.groupby("variant", sort=False)}
display(ss.set_index(["variant", "rule"])[["SingleScore", "SingleScore vs full", "SFT reward"]])
print("Spearman of the rule rankings by WinRate and by SingleScore: "
      + ", ".join(f"{v} {r:.2f}" for v, r in rank_agree.items()))

# %%
fig, axes = plt.subplots(1, len(variants), figsize=(5.6 * len(variants), 4.4), squeeze=False)
for ax, (v, g) in zip(axes[0], summary.groupby("variant", sort=False)):
    for _, r in g.iterrows():
        ax.errorbar(r.single_score, r.winrate_vs_sft, xerr=[[r.single_score - r.single_score_lo], [r.single_score_hi - r.single_score]],
                    yerr=[[r.winrate_vs_sft - r.winrate_lo], [r.winrate_hi - r.winrate_vs_sft]], fmt="o", capsize=2,
                    color=plots.color(r.rule), label=r.rule)
    ax.axhline(0.5, color="#333333", ls="--", lw=1, label="WinRate 0.5 (SFT)")
    ax.axvline(g.reward_sft.mean(), color=plots.color("sft"), ls=":", lw=1.5, label="SFT's SingleScore")
    ax.set_xlabel("SingleScore: mean oracle reward of the answers (0-1), 95% interval")
    ax.set_ylabel("WinRate against SFT, 95% interval")
    ax.set_title(f"{v}: the two metrics, rule by rule")
fig.tight_layout()
plots.figure_legend(fig, axes)  # every rule of every panel, once
nb.figure(fig, "singlescore")

# %% [markdown]
# **How to read it.** Each point is one rule: right means better answers on an absolute scale, up means
# more wins against SFT; the dashed and dotted lines mark where the SFT model itself sits. Points on a
# rising diagonal mean the two metrics agree on the ordering of the rules.

# %% [markdown]
# ## 5. DPO and SLiC
#
# The paper also trains with SLiC, a hinge on the same implicit reward margin
# $h_\theta(d) = \beta[\log\frac{\pi_\theta(y_w|x)}{\pi_{ref}(y_w|x)} - \log\frac{\pi_\theta(y_l|x)}{\pi_{ref}(y_l|x)}]$:
#
# $$ \ell_{DPO} = -\log\sigma(h_\theta(d)), \qquad \ell_{SLiC} = \max(0,\ 1 - h_\theta(d)). $$
#
# Under SLiC everything is redone with the hinge: warm-up, validation model, the LossDiff and IF
# scores, and the continuation. A rule that is good *data* should help under both objectives; the
# Spearman correlation of the two rule orderings measures that.

# %%
fam0 = p.model.family
pair = [v for v in (f"{fam0}/dpo", f"{fam0}/slic") if v in set(summary.variant)]
wide = summary[summary.variant.isin(pair)].pivot(index="rule", columns="variant", values="winrate_vs_sft")
if len(pair) == 2:
    wide["SLiC minus DPO (points)"] = 100 * (wide[pair[1]] - wide[pair[0]])
    both = wide.dropna()
    rho_obj = stats.spearmanr(both[pair[0]], both[pair[1]]).statistic
    print(f"Spearman of the rule orderings under DPO and SLiC ({len(both)} rules): {rho_obj:.2f}")
else:
    rho_obj = float("nan")
    print("Only one objective was run; add e.g. 'llama/slic' to variants for the comparison.")
wide.sort_values(pair[0], ascending=False).round(3)

# %% [markdown]
# ## 6. The paper's table beside ours
#
# The paper: Llama-3.1-8B, DPO, 64% of UltraFeedback, judged by GPT-4, WinRate % against its SFT
# model on four prompt sets. Our world, models and judge are different, so the **levels** do not
# compare; the **ordering** of the four rules the paper reports does. Kendall's $\tau$ between the
# paper's UltraFeedback column and our WinRates is 1 when the orderings agree and -1 when reversed.

# %%
paper_rules = list(PAPER_WINRATES.index)
side = PAPER_WINRATES.copy()
taus = {}
for v, g in summary.groupby("variant", sort=False):
    g = g.set_index("rule")
    if set(paper_rules) <= set(g.index):
        side[f"ours: {v}"] = (100 * g.loc[paper_rules, "winrate_vs_sft"]).round(1)
        taus[v] = stats.kendalltau(PAPER_WINRATES.UltraFeedback, g.loc[paper_rules, "winrate_vs_sft"]).statistic
display(side)
print("Kendall tau with the paper's ordering (UltraFeedback): " + ", ".join(f"{v} {t:+.2f}" for v, t in taus.items()))

# %% [markdown]
# **The batch's seeds.** LossDiff-IRM, full data and the two filters are also rules of the default batch: `make reproduce`
# trains them over every seed of `run.seeds`, more seeds than this notebook's own study. At full scale
# on the default parameters, the cell below reads the batch's committed result files
# (`figures/<run name>_comparisons.csv`, `_summary.csv`): the same paired difference, with its interval
# over seeds and prompts, so the verdict at the batch's power stands beside this notebook's.

# %%
batch6 = {other: nb.batch_difference("lossdiff-irm", other) for other in ("full", "annotation-gap", "rm-margin")}
batch6 = {k: d for k, d in batch6.items() if d is not None}
if batch6:
    n6 = max(d["n_seeds"] for d in batch6.values())
    held6 = [k for k, d in batch6.items() if d["lo"] > 0]
    claim6_batch = (f"At the default batch's {n6} seeds ({p.model.family}/DPO, `figures/{next(iter(batch6.values()))['file']}`): "
                    f"LossDiff-IRM beats {len(held6)} of {len(batch6)} with an interval above 0: "
                    + "; ".join(f"vs {k} {100 * d['diff']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}] points, "
                                f"better in {d['n_better']} of {d['n_seeds']} seeds" for k, d in batch6.items()) + ". "
                    + ("Claim 6 holds there." if len(held6) == len(batch6) == 3 else
                       "Claim 6 holds there in part." if "full" in held6 else "Claim 6 does not hold there."))
else:
    claim6_batch = ""
print(claim6_batch or "No batch comparison used here (it is read at full scale with the default parameters only).")

# %% [markdown]
# ## 7. Every family, both objectives: the family grid
#
# The paper's main table runs each method for each model family. The kit's counterpart is the
# *family grid*: every tiny family (Llama-, Qwen3-, Pythia- and GPT-2-style) x DPO and SLiC x the
# headline rules, each over many seeds. It is too long for a notebook (hours on a laptop CPU), so
# `make families` runs it as a batch and commits its result files with their provenance
# (`figures/grid-<family>-<objective>_summary.csv`); this section reads them. Each cell of the table
# is the WinRate against SFT with its 95% interval over seeds and prompts, and below it the paired
# difference to full data, "better than full in k of n seeds", and the seeds a paired t-test would
# need for 80% power at the observed effect. The figure shows the same differences per family.

# %%
grid_dir = R.REPO / "figures"  # the repository's committed results (a pip install without the repository has none)
grid = R.grid_frame(grid_dir)
if grid.empty:
    grid_text = ("No family-grid results here: run `make families` in a clone of the repository "
                 "(docs/PERFORMANCE.md gives its time), then rerun this cell.")
    print(grid_text)
else:
    display(Markdown(R.grid_table(grid_dir)))
    fig = plots.plot_family_grid(grid, title="The family grid: each headline rule minus full data, 95% intervals over seeds and prompts")
    nb.figure(fig, "family_grid")
    fused = grid[grid.rule == "lossdiff-irm"]
    wins = fused[fused.diff_vs_full_lo > 0]
    losses = fused[fused.diff_vs_full_hi < 0]
    grid_text = (f"Family grid (committed results, {len(fused)} family/objective variants, "
                 f"{'/'.join(map(str, sorted(set(fused.n_seeds.astype(int)))))} seeds each): LossDiff-IRM beats full data "
                 f"with an interval above zero in {len(wins)} of {len(fused)} variants"
                 + (f" ({', '.join(f'{r.family}/{r.objective}' for r in wins.itertuples())})" if len(wins) else "")
                 + f", falls below it in {len(losses)}"
                 + (f" ({', '.join(f'{r.family}/{r.objective}' for r in losses.itertuples())})" if len(losses) else "")
                 + f", and is undecided in the other {len(fused) - len(wins) - len(losses)}."
                 + (" Some of these files are stale (figures/STALE.md)." if grid.stale.any() else ""))
    print(grid_text)

# %% [markdown]
# **How to read it.** One panel per family; each row a rule, circles DPO and squares SLiC, the bar
# its 95% interval; the dotted line at zero is full data. A rule helps in a family when its interval
# lies right of the line. The panel title gives the number of seeds the variant ran: fewer seeds,
# wider intervals.

# %% [markdown]
# ## 8. Conclusion
#
# The check, per variant: LossDiff-IRM's WinRate minus that of full data, of the annotation-score
# filter and of the reward-model filter, paired on the same prompts, with 95% intervals (over prompts
# at one seed; over seeds then prompts at full scale). Claim 6 holds in a variant when all three
# intervals lie above 0. The README's tables, generated from the batch (every seed, intervals over
# seeds and prompts), give the same comparison at the batch's power. Seeds differ a lot (issue 9): one
# seed can show a difference that many seeds do not, or miss one they show, so a one-seed run states
# no verdict.

# %%
rows = []
for v, g in per_prompt.groupby("variant", sort=False):
    for other in ("full", "annotation-gap", "rm-margin"):
        if {"lossdiff-irm", other} <= set(g.rule):
            d = E.paired_rule_difference(g, "lossdiff-irm", other, n_bootstrap=p.run.n_bootstrap, seed=p.eval.seed)
            rows.append({"variant": v, "vs": other, "points": 100 * d["diff"], "lo": 100 * d["lo"], "hi": 100 * d["hi"],
                         "better in seeds": f"{d['n_better']} of {d['n_seeds']}"})
diffs = pd.DataFrame(rows, columns=["variant", "vs", "points", "lo", "hi", "better in seeds"])
display(diffs.round(1))
one_seed = len(nb.seeds) == 1
lines, n_held, n_part = [], 0, 0
for v, g in diffs.groupby("variant", sort=False):
    beats = [f"{r.vs} ({r.points:+.1f} [{r.lo:+.1f}, {r.hi:+.1f}])" for r in g.itertuples() if r.lo > 0]
    not_sig = [f"{r.vs} ({r.points:+.1f} [{r.lo:+.1f}, {r.hi:+.1f}])" for r in g.itertuples() if r.lo <= 0]
    held = len(beats) == len(g) == 3
    n_held += held
    n_part += (not held) and any(r.vs == "full" and r.lo > 0 for r in g.itertuples())
    lines.append(f"- **{v}**: LossDiff-IRM (WinRate {100 * summary.set_index(['variant', 'rule']).loc[(v, 'lossdiff-irm'), 'winrate_vs_sft']:.1f}%) "
                 f"{'is ahead of' if one_seed else 'beats'} {', '.join(beats) or 'none of them'}"
                 + (f"; {'interval covers 0 or less against' if one_seed else 'not significantly better than'} "
                    f"{', '.join(not_sig)}" if not_sig else "") + ".")
n_var = diffs.variant.nunique()
if n_var == 0:
    lines.append("- LossDiff-IRM was not among the rules run; add it to `rules` to test claim 6.")
if one_seed:
    head = (f"On this one seed, LossDiff-IRM's interval over prompts lies above all three comparisons in {n_held} of "
            f"{n_var} variants, and above full data alone in {n_part} more")
else:
    head = ("Claim 6 was not tested (LossDiff-IRM was not among the rules run)" if n_var == 0 else
            "Claim 6 holds in every variant" if n_held == n_var else
            f"Claim 6 is not shown in any of the {n_var} variants (in none do the intervals against full data and "
            "both filters all lie above 0)" if n_held == n_part == 0 else
            f"Claim 6 holds in {n_held} of {n_var} variants" + (f", and in part (LossDiff-IRM beats full data but not "
                                                                 f"every filter) in {n_part} more" if n_part else ""))
claim6 = (f"{head} at this scale ({nb.scale}, seeds {nb.seeds}, keep {keep:g}; points of WinRate against SFT, paired, 95% "
          f"intervals):\n" + "\n".join(lines))
claim6 += (f" SingleScore and WinRate rank the rules alike (Spearman {', '.join(f'{v} {r:.2f}' for v, r in rank_agree.items())})"
           + (f"; DPO and SLiC order the rules with Spearman {rho_obj:.2f}" if np.isfinite(rho_obj) else "")
           + ("; Kendall tau with the paper's ordering of its four rules: "
              + ", ".join(f"{v} {t:+.2f}" for v, t in taus.items()) if taus else "") + ".")
if nb.scale == "ci":
    claim6 += ("\n\n(CI scale: a toy world of 96 pairs and 32 test prompts; this checks the code, not the claim: "
               "the toy scale cannot tell.)")
if one_seed:
    claim6 += f"\n\nThe intervals resample the test prompts of one seed only. {C.ONE_SEED}"
claim6 += ("\n\n" + claim6_batch if claim6_batch else "") + "\n\n" + grid_text
display(Markdown(claim6))
nb.finish(claim6=claim6, variants=variants, keep=keep, family_grid=grid_text, claim6_batch=claim6_batch,
          summary=summary.drop(columns=[c for c in summary.columns if c.endswith("_per_seed")]).to_dict("records"),
          lossdiff_irm_differences=diffs.to_dict("records"), spearman_winrate_singlescore=rank_agree,
          spearman_dpo_slic=rho_obj, kendall_paper=taus)
