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
# # 02 · Cheap proxies for influence: LossDiff and IRM against IF
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tifkit/tifkit/blob/main/notebooks/02_sf_correlation.ipynb)
#
# Exact influence (notebook 01) needs a gradient per training pair: affordable for our tiny model,
# hours for a billion-parameter one. *Towards Understanding Valuable Preference Data for Large Language
# Model Alignment* ([arXiv 2510.13212](https://arxiv.org/abs/2510.13212)) replaces it by two scores that
# need forward passes only. With $\theta$ the warm-up model, $\theta_{val}$ the model after one more epoch
# of DPO on the validation set $D_{val}$, $\pi_{ref}$ the SFT model and $\ell$ the DPO loss:
#
# $$ \mathrm{LossDiff}(d) = \ell(\theta; d) - \ell(\theta_{val}; d) \;\approx\; \eta\,\mathrm{IF}(d), $$
#
# since $\theta_{val} \approx \theta - \eta\, g_{val}$ to first order (a pair whose loss drops when the model
# learns the validation set is one that agrees with it); and the **implicit reward margin**
#
# $$ \mathrm{IRM}(d) = h_\theta(d) = \beta\Big[\log\tfrac{\pi_\theta(y_w|x)}{\pi_{ref}(y_w|x)} - \log\tfrac{\pi_\theta(y_l|x)}{\pi_{ref}(y_l|x)}\Big], $$
#
# how strongly the warm-up model already prefers the chosen answer (no validation set at all).
#
# **Claims tested** (`docs/METHOD.md`): **claim 4**, LossDiff and IRM correlate positively with IF
# (Pearson and Spearman), LossDiff more strongly (the paper reports about 0.77 and 0.67); **claim 7**,
# scoring with LossDiff-IRM is two orders of magnitude cheaper than exact IF. Also shown: how well each
# score finds the mislabelled pairs (AUROC against the world's ground truth).
#
# **Hardware and time.** CPU only. Default scale from an empty cache on a fresh clone: **46 s** on 2 CPU
# cores (2026-11-27, load average about 2.5, i.e. little else running). Earlier measurements while
# other jobs loaded the machine follow. CPU only. The default scale (`params/tiny.yaml`, 2,000 training pairs, one seed)
# trains the shared stages, scores every pair and times the scorers: from an empty cache 3 min 1 s on 2
# CPU cores that other jobs kept at a load average of 9-13 (55 CPU-seconds in all, so about a minute
# on an idle machine, an estimate); about 20 s once notebook 01 (or the batch) has scored the pairs.

# %% tags=["parameters"]
scale = None                  # None: $TIFKIT_NOTEBOOK_SCALE, else "default" (one seed, real size); "ci": toy; "full": all seeds
params_file = "tiny.yaml"     # a params file shipped with tifkit, or a path to your own
overrides = []                # extra settings in the form tifkit --set takes, e.g. train.objective set to slic
seeds = None                  # None: run.seed (default and ci scale) or run.study_seeds (full scale)
run_root = None               # None: the params file's run.root (runs/), or runs/nb-ci at ci scale
figures_dir = None            # None: <run root>/figures; the papermill batch passes figures/
cost_pairs = None             # pairs timed for the cost comparison (claim 7); None: 64 at ci scale, 256 otherwise
cost_repeats = None           # timings of each method (claim 7's ratio is their median); None: 2 at ci scale, 5 otherwise

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
from scipy import special, stats

from tifkit import conclusions as C
from tifkit import experiments as E
from tifkit import notebooks as N
from tifkit import plots
from tifkit import report as R

nb = N.start("02_sf_correlation", scale, params_file, overrides, seeds, run_root, figures_dir)
p = nb.p
beta = p.train.beta

# %% [markdown]
# ## 1. The score table
#
# One row per training pair. The log-probabilities (sums over the response tokens) of the chosen and
# the rejected answer under three models, the warm-up policy $\theta$ (`policy`), the SFT reference
# (`ref`) and the validation model $\theta_{val}$ (`val`), are all a cheap score needs; `if` is the exact
# influence we compare against.

# %%
tables = E.score_tables(p, nb.seeds)
t = tables[nb.seeds[0]]
logp = [f"logp_{m}_{s}" for m in ("policy", "ref", "val") for s in ("chosen", "rejected")]
t[["pair_id", *logp, "loss_policy", "loss_val", "irm", "lossdiff", "if", "gt_flipped"]].head()

# %% [markdown]
# ## 2. IRM and LossDiff from the log-probabilities
#
# Both proxies are arithmetic on those columns. IRM is the margin $h_\theta$ above; with
# $h_{val}$ the same margin under $\theta_{val}$, the DPO loss is $\ell = -\log\sigma(h) = \log(1 + e^{-h})$
# (SLiC: $\max(0, 1 - h)$), so
#
# $$ \mathrm{LossDiff}(d) = \ell\big(h_\theta(d)\big) - \ell\big(h_{\theta_{val}}(d)\big). $$
#
# We recompute both here and check them against the table's columns.

# %%
def margin(model):
    chosen = t[f"logp_{model}_chosen"] - t["logp_ref_chosen"]
    rejected = t[f"logp_{model}_rejected"] - t["logp_ref_rejected"]
    return beta * (chosen - rejected)


def loss(h):
    return np.logaddexp(0.0, -h) if p.train.objective == "dpo" else np.maximum(0.0, 1.0 - h)


irm = margin("policy")
lossdiff = loss(irm) - loss(margin("val"))
print(f"IRM: max |by hand - table| = {np.max(np.abs(irm - t['irm'])):.2e}")
print(f"policy loss: max |by hand - table| = {np.max(np.abs(loss(irm) - t['loss_policy'])):.2e}")
print(f"LossDiff: max |by hand - table| = {np.max(np.abs(lossdiff - t['lossdiff'])):.2e}")
print(f"DPO loss at h = 0 is log 2 = {np.log(2):.4f}; -log sigmoid(0) = {-np.log(special.expit(0.0)):.4f}")

# %% [markdown]
# ## 3. Do the proxies track IF? (claim 4)
#
# Pearson's $r$ measures a linear relation; Spearman's $\rho$ is Pearson's $r$ of the ranks, which is what
# matters for a rule that keeps a percentile band. Both with `scipy.stats`, one seed at a time:

# %%
rows = []
for s, ts in tables.items():
    for col in ("lossdiff", "irm"):
        rows.append({"seed": s, "score": col, "pearson": stats.pearsonr(ts[col], ts["if"]).statistic,
                     "spearman": stats.spearmanr(ts[col], ts["if"]).statistic,
                     "paper": R.PAPER[f"corr_{col}_if"]})
corr = pd.DataFrame(rows)
corr_mean = corr.groupby("score", sort=False)[["pearson", "spearman", "paper"]].mean()
corr if len(tables) > 1 else corr_mean

# %%
flip = t.gt_flipped.to_numpy(dtype=bool)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for ax, col, label in zip(axes, ("lossdiff", "irm"), ("LossDiff", "IRM")):
    ax.scatter(t["if"][~flip], t[col][~flip], s=7, alpha=0.45, color="#4c72b0", label="correctly labelled pair")
    ax.scatter(t["if"][flip], t[col][flip], s=7, alpha=0.6, color="#c44e52", label="mislabelled pair (ground truth)")
    slope, intercept = np.polyfit(t["if"], t[col], 1)
    xs = np.quantile(t["if"], [0.001, 0.999])
    ax.plot(xs, intercept + slope * xs, color="#333333", lw=1.5, label="least-squares line")
    r = corr[(corr.seed == nb.seeds[0]) & (corr.score == col)].iloc[0]
    ax.set_title(f"{label} against IF: Pearson {r.pearson:.2f}, Spearman {r.spearman:.2f} (paper {r.paper:.2f})")
    ax.set_xlabel("IF(d), exact influence on the validation loss")
    ax.set_ylabel(f"{label}(d) (loss units)" if col == "lossdiff" else f"{label}(d) = h_theta(d) (nats x beta)")
    ax.legend(frameon=False, fontsize=8, loc="best")
fig.suptitle(f"Cheap proxies against exact influence, {len(t)} pairs (seed {nb.seeds[0]}, {nb.scale} scale)")
fig.tight_layout()
nb.figure(fig, "scatter")

# %% [markdown]
# **How to read it.** Each dot is a training pair; a proxy that tracks IF puts the dots along a rising
# line. Red dots (mislabelled) far left and low are what every score should push out of a middle band.

# %%
report = R.aggregate({s: R.score_report(ts, p.select.keep, p.select) for s, ts in tables.items()},
                     ["section", "name", "statistic"])
claim4 = C.conclude_correlation(report)
# at full scale on the default parameters, the same verdict from the default batch's seeds (its committed
# score diagnostics: each correlation's mean, sd and seed count), which has the power this study lacks
batch_report = nb.batch_diagnostics()
claim4_batch = "" if batch_report is None else (
    f"At the default batch's {int(batch_report.n_runs.max())} seeds (`figures/{p.run.name}_score_diagnostics.csv`): "
    + C.conclude_correlation(batch_report))
display(Markdown(claim4 + (f"\n\n{claim4_batch}" if claim4_batch else "")))

# %% [markdown]
# ## 4. Which score finds the mislabelled pairs?
#
# A low score should flag a mislabelled pair. The **AUROC** is the probability that a random
# mislabelled pair scores below a random clean one (ties count one half): 0.5 is chance, 1 perfect.
# It equals the Mann-Whitney $U$ statistic divided by $n_{\text{mislabelled}}\, n_{\text{clean}}$; the
# ROC curve plots, for every threshold, the share of mislabelled pairs flagged against the share of
# clean pairs wrongly flagged.

# %%
scores = R.score_columns(t)
auc = {}
fig, ax = plt.subplots(figsize=(5.6, 4.6))
for name, v in scores.items():
    u = stats.mannwhitneyu(-v[flip], -v[~flip]).statistic  # low score flags: compare the negated scores
    auc[name] = u / (flip.sum() * (~flip).sum())
    assert abs(auc[name] - R.auroc(v, flip)) < 1e-12
    order = np.argsort(v, kind="stable")  # lowest score first: flagged first
    tpr = np.r_[0, np.cumsum(flip[order]) / flip.sum()]
    fpr = np.r_[0, np.cumsum(~flip[order]) / (~flip).sum()]
    ax.plot(fpr, tpr, lw=2 if name in ("if", "lossdiff", "irm") else 1.2,
            color=plots.color({"if": "tif", "rm_margin": "rm-margin", "annotation_gap": "annotation-gap"}.get(name, name)),
            label=f"{name} (AUROC {auc[name]:.2f})")
ax.plot([0, 1], [0, 1], color="#333333", ls="--", lw=1, label="chance (AUROC 0.50)")
ax.set_xlabel("clean pairs flagged (false-positive rate)")
ax.set_ylabel("mislabelled pairs flagged (true-positive rate)")
ax.set_title(f"Finding the {flip.sum()} mislabelled pairs (seed {nb.seeds[0]})")
ax.legend(frameon=False, fontsize=8, loc="lower right")
nb.figure(fig, "roc")
pd.Series(auc, name="AUROC").round(3).to_frame().T

# %% [markdown]
# **How to read it.** A curve bowed towards the top-left flags mislabelled pairs before clean ones; the
# dashed diagonal is a random score. The reward-model margin and the annotators' score gap are the
# filters of notebook 04, shown for comparison.

# %%
auroc_text = C.conclude_auroc(report)
display(Markdown(auroc_text))

# %% [markdown]
# ## 5. What the proxies cost (claim 7)
#
# The paper reports about 5 minutes for LossDiff-IRM against about 10 hours for exact IF on a 1B model
# (about 120x). We time, on the first `cost_pairs` training pairs and one process: LossDiff-IRM (three
# forward passes: policy, reference, validation model), exact IF batched (per-layer products, no
# per-pair gradient) and exact IF as a loop (one backward per pair). `seconds_full` extrapolates to all
# of $D_{tr}$. Timings vary from run to run (other processes, caches), so each method is timed
# `cost_repeats` times in turn and the ratio is the median of the repeats' own ratios, with their range.
#
# **An honest note on size.** Our model has 0.13M parameters. Three forward passes cost about as much as
# one forward and backward, so at this size the proxies cannot save what they save on a large model (the
# ratio measured here is printed below); the paper's 120x comes from a 1B model, where a per-pair gradient the size of the model (memory
# traffic, not arithmetic) dominates. `docs/PERFORMANCE.md` measures both sizes on CPU and GPU; the
# timings below are noisy on a shared machine.

# %%
from tifkit.pipeline import prepare

n_cost = cost_pairs or (64 if nb.scale == "ci" else 256)
n_repeats = cost_repeats or (2 if nb.scale == "ci" else 5)
ctx0 = prepare(p, nb.seeds[0])
timings = [E.scoring_cost(ctx0, n_pairs=n_cost) for _ in range(n_repeats)]
print(f"exact IF, batched against the loop: max relative difference {timings[0].attrs.get('if_max_rel_diff', np.nan):.1e}")
cost = pd.concat([c.assign(repeat=i) for i, c in enumerate(timings)], ignore_index=True)
cost_med = C.cost_summary(cost).assign(seconds_full=lambda d: d.seconds * len(ctx0.train) / d.n_pairs)
cost_med

# %%
fig, ax = plt.subplots(figsize=(7.5, 2.8))
ax.barh(cost_med.index, cost_med.seconds_full,
        color=[plots.color("lossdiff-irm"), plots.color("tif"), "#64b5cd"][:len(cost_med)])
for i, r in enumerate(cost_med.itertuples()):
    spread = f", {r.ratio_min:.1f}-{r.ratio_max:.1f}x" if r.repeats > 1 else ""
    ax.text(r.seconds_full, i, f"  {r.seconds_full:.1f} s ({r.ratio:.1f}x{spread})", va="center", fontsize=9)
paper_line = R.PAPER["cost_speedup"] * float(cost_med.loc["lossdiff-irm", "seconds_full"])
ax.axvline(paper_line, color="#c44e52", ls="--", lw=1.2,
           label=f"exact IF at the paper's ratio ({R.PAPER['cost_speedup']:.0f}x LossDiff-IRM)")
ax.set_xlim(0, 1.15 * max(paper_line, cost_med.seconds_full.max()))
ax.set_xlabel(f"seconds to score all {len(t)} training pairs (extrapolated from {n_cost} timed; median of "
              f"{n_repeats} timings, ratio range in brackets)")
ax.set_title("Cost of scoring: cheap proxies against exact IF")
ax.legend(frameon=False, fontsize=8, loc="upper center")
nb.figure(fig, "cost")

# %% [markdown]
# **How to read it.** Bar length is the median time to score every training pair, the label the
# median ratio to LossDiff-IRM and its range over the repeats; the dashed line is where exact IF would
# sit at the paper's 120x. The gap between the IF bar and that line is what model size buys.

# %% [markdown]
# ## 6. Conclusion
#
# Claims 4 and 7, and the AUROC ranking, stated from this run's numbers (the correlations over seeds
# at full scale; the cost ratio as the median over repeated timings, with its range).

# %%
claim7 = C.conclude_cost(cost)
text = f"- {claim4}\n- {auroc_text}\n- {claim7}" + (f"\n- {claim4_batch}" if claim4_batch else "")
if nb.scale == "ci":
    text += ("\n- CI scale: a toy world of a few dozen pairs and a tiny model: the toy scale cannot tell whether these "
             "claims hold; this run checks the code only.")
display(Markdown(text))
nb.finish(claim4=claim4, claim4_batch=claim4_batch, claim7=claim7, conclusion_auroc=auroc_text,
          correlations=corr.to_dict("records"), auroc=auc, cost=cost.to_dict("records"),
          cost_ratio=cost_med[["repeats", "ratio", "ratio_min", "ratio_max"]].reset_index().to_dict("records"))
