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
# # 05 · Model dependence: is a pair valuable for every model, or for one?
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tifkit/tifkit/blob/main/notebooks/05_model_dependence.ipynb)
#
# The paper ([arXiv 2510.13212](https://arxiv.org/abs/2510.13212)) opens with an observation: the
# value of a preference pair is not a property of the pair alone. It measures value by the influence
# of a pair $d$ on the validation loss of the model $\theta$ being aligned,
#
# $$ \mathrm{IF}_\theta(d) = \big\langle \nabla_\theta \ell(\theta; d),\ g_{val} \big\rangle,\qquad
#    g_{val} = \frac{1}{|D_{val}|}\sum_{v \in D_{val}} \nabla_\theta \ell(\theta; v), $$
#
# (positive: a gradient step on $d$ lowers the validation loss), and finds that a 0.6B Qwen and a 1B
# Llama rank the same pairs differently: a pair can help one model and hurt the other. If that holds,
# data selection has to be done *per model*, which is why the paper's cheap scores (LossDiff, IRM) are
# computed with the model in the loop.
#
# **What you will see.** The same 2,000 training pairs scored by exact IF under four tiny families
# (Llama-, Qwen-, Pythia- and GPT-2-style, each with its own SFT, warm-up and validation models); the
# Spearman correlation of their IF rankings; the pairs whose IF changes sign from one model to another;
# a **control**: the same family trained from other initialization seeds (`run.model_seed`), since two
# families differ in their random start as well as in their architecture; and a **transfer** test:
# select with family A's scores, train family B on that selection, and compare with B's own selection.
#
# **Claims tested** (docs/METHOD.md): **claim 1**, data value depends on the model: IF of the same
# pairs disagrees across model families.
#
# **Hardware and time.** CPU only; every family (and the control) trains in its own worker process,
# one per core. `scale = None` runs the default scale: the world of `params/tiny.yaml` (2,000 training
# pairs, one seed), four families, one control seed, and the transfer between llama and qwen both
# ways: 2 min 10 s (129 s) on 2 CPU cores from an empty cache (measured on the development machine at
# load average 1-2; 18 minutes when other jobs kept the load at 12), less when notebook 04 or the
# batch have cached the llama stages. `scale = "full"` uses every seed of `run.study_seeds` (the first
# five of the batch's seeds) and a second control seed (the transfer stays llama <-> qwen), the control
# on every seed so that claim 1 compares matched seeds: 11 min 39 s in `make reproduce` from a fresh
# clone, after the batch (2026-12-02, docs/NOTEBOOKS.md). Narrow it with `families`, `seeds` or
# `init_seeds`.

# %% tags=["parameters"]
scale = None                  # None: $TIFKIT_NOTEBOOK_SCALE, else "default" (one seed, real size); "ci": toy; "full": all seeds
params_file = "tiny.yaml"     # a params file shipped with tifkit, or a path to your own
overrides = []                # extra parameter overrides, strings as for the CLI's --set (section.key, an equals sign, value)
seeds = None                  # None: run.seed (default and ci scale) or run.study_seeds (full scale)
run_root = None               # None: the params file's run.root (runs/), or runs/nb-ci at ci scale
figures_dir = None            # None: <run root>/figures; the papermill batch passes figures/
families = None               # tiny families (model.family); None: llama, qwen, pythia, gpt2 (llama and qwen at ci scale)
keep = 0.64                   # keep ratio of the TIF and transfer selections
init_seeds = None             # control: other model seeds of the first family; None: [100], or [100, 101] at full scale; [] skips
transfer_rule = "lossdiff-irm"  # the rule whose selection is transferred between families
transfer_pairs = None         # [source, target] family pairs; None: llama and qwen both ways
agree = 0.9                   # mean cross-family Spearman at or above which the rankings count as the same
margin = 0.1                  # cross-family Spearman must be this much below the within-family one
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
import seaborn as sns
from IPython.display import Markdown, display
from scipy import stats

from tifkit import conclusions as C
from tifkit import experiments as E
from tifkit import notebooks as N
from tifkit import plots
from tifkit import report as R

nb = N.start("05_model_dependence", scale, params_file, overrides, seeds, run_root, figures_dir)
p = nb.p

# %% [markdown]
# ## 1. Score the same pairs under every family
#
# Each family gets the whole pipeline on the same world seed: SFT on the same demonstrations, one
# epoch of DPO on $D_{tr}$ (the warm-up model $\theta$, where IF is measured), one epoch on $D_{val}$
# (the validation model) and the score table. The control runs the first family again with other
# model seeds: `run.model_seed` changes the initialization and the training order of every stage and
# leaves the world (the pairs) alone. All runs go to worker processes; cached stages are reused.

# %%
families = list(families or (["llama", "qwen"] if nb.scale == "ci" else N.TINY_FAMILIES))
if init_seeds is None:
    init_seeds = [100, 101] if nb.scale == "full" else [100]
fam_params = N.family_params(params_file, families, scale=nb.scale, overrides=overrides, run_root=run_root)
runs = E.family_score_tables(fam_params, nb.seeds, init_seeds, workers)
tables = runs["families"][nb.seeds[0]]
s0 = nb.seeds[0]
V = pd.concat({fam: t.set_index("pair_id")["if"] for fam, t in tables.items()}, axis=1)
V["mislabelled"] = tables[families[0]].set_index("pair_id").loc[V.index, "gt_flipped"].astype(bool)
print(f"seed {s0}: {len(V)} pairs scored by {len(families)} families; control runs: {list(runs['control'])}")
V.head(8)

# %% [markdown]
# ## 2. Do the families rank the pairs alike?
#
# Spearman's $\rho$ is the Pearson correlation of the *ranks*: $\rho_{AB} = \mathrm{corr}(\mathrm{rank}\,
# \mathrm{IF}_A, \mathrm{rank}\,\mathrm{IF}_B)$. It is 1 when two models order the pairs identically
# (whatever the scale of their IF values), 0 when their orders are unrelated. A selection rule only
# uses the order, so this is the number that matters. One pair of families written out, then all:

# %%
a, b = families[:2]
rank_a, rank_b = stats.rankdata(V[a]), stats.rankdata(V[b])
print(f"{a} vs {b}: Pearson of the ranks {np.corrcoef(rank_a, rank_b)[0, 1]:.4f}, "
      f"scipy.stats.spearmanr {stats.spearmanr(V[a], V[b]).statistic:.4f}, Pearson of the values "
      f"{stats.pearsonr(V[a], V[b]).statistic:.4f}")
spearman = V[families].corr(method="spearman")
mds = {s: R.model_dependence(runs["families"][s], keep, p.select) for s in nb.seeds}
assert np.allclose(spearman, mds[s0].spearman)
spearman.round(3)

# %% [markdown]
# ## 3. A pair that helps one model and hurts another
#
# The sign of IF says whether a step on the pair lowers ($>0$) or raises ($<0$) the validation loss.
# For two models $A$, $B$ the share of pairs that help $A$ and hurt $B$ is
# $\frac1n\sum_d \mathbb 1[\mathrm{IF}_A(d) > 0]\,\mathbb 1[\mathrm{IF}_B(d) < 0]$; adding the reverse
# gives the share whose sign changes. We split it by the ground truth: a mislabelled pair should hurt
# every model, so its sign should change less often than that of a correct one.

# %%
pos, neg = (V[families] > 0).to_numpy(), (V[families] < 0).to_numpy()
helps_hurts = pd.DataFrame((pos.T.astype(float) @ neg) / len(V), index=families, columns=families)
sign_change = helps_hurts + helps_hurts.T
assert np.allclose(sign_change, mds[s0].sign_disagreement)
flip = V.mislabelled.to_numpy()
by_truth = pd.DataFrame({
    f"{x} vs {y}": {"all pairs": sign_change.loc[x, y],
                    "correct labels": float((np.sign(V[x]) * np.sign(V[y]) < 0)[~flip].mean()),
                    "mislabelled": float((np.sign(V[x]) * np.sign(V[y]) < 0)[flip].mean()),
                    "IF < 0 under both (mislabelled)": float(((V[x] < 0) & (V[y] < 0))[flip].mean())}
    for i, x in enumerate(families) for y in families[i + 1:]}).T
display(helps_hurts.round(3).rename_axis("helps (row) / hurts (column)"))
by_truth.round(3)

# %%
off = ~np.eye(len(families), dtype=bool)
fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), gridspec_kw={"width_ratios": [1, 1, 1.15]})
sns.heatmap(spearman, annot=True, fmt=".2f", vmin=-1, vmax=1, cmap="vlag", ax=axes[0], square=True,
            cbar_kws={"label": "Spearman of IF (same pairs)"})
axes[0].set_title(f"IF rankings across families (seed {s0})")
axes[0].set_xlabel("family")
axes[0].set_ylabel("family")
sns.heatmap(sign_change, annot=True, fmt=".2f", vmin=0, vmax=max(0.5, float(sign_change.to_numpy()[off].max())),
            cmap="rocket_r", ax=axes[1], square=True, cbar_kws={"label": "share of pairs whose IF changes sign"})
axes[1].set_title("pairs that help one family and hurt the other")
axes[1].set_xlabel("family")
axes[1].set_ylabel("family")
lo_a, lo_b = spearman.where(off).stack().idxmin()
ax = axes[2]
for mask, label, col in ((~flip, "correctly labelled pair", "#4c72b0"), (flip, "mislabelled pair", "#c44e52")):
    ax.scatter(V[lo_a][mask], V[lo_b][mask], s=6, alpha=0.45, color=col, label=label)
ax.axhline(0, color="#333333", lw=0.8)
ax.axvline(0, color="#333333", lw=0.8, label="IF = 0 (sign change across the axes)")
xlo, xhi, _ = plots.robust_limits(V[lo_a])  # the central 98% of each axis: a few outliers cannot stretch it
ylo, yhi, _ = plots.robust_limits(V[lo_b])
ax.set_xlim(xlo, xhi)
ax.set_ylim(ylo, yhi)
clipped = int(((V[lo_a] < xlo) | (V[lo_a] > xhi) | (V[lo_b] < ylo) | (V[lo_b] > yhi)).sum())
ax.set_xlabel(f"IF under {lo_a} (inner product of gradients)")
ax.set_ylabel(f"IF under {lo_b} (inner product of gradients)")
ax.set_title(f"least similar pair of families: {lo_a} vs {lo_b} (rho {spearman.loc[lo_a, lo_b]:.2f})\n"
             f"{clipped} of {len(V)} pairs fall outside the axes (limits: 1st-99th percentile, padded)", fontsize=9)
ax.legend(frameon=False, fontsize=8, loc="best", markerscale=3)
fig.tight_layout()
nb.figure(fig, "model_dependence")

# %% [markdown]
# **How to read it.** Left: 1 on the diagonal, and the lower the off-diagonal the more two families
# disagree about which pairs matter; middle: the share of pairs on opposite sides of zero. Right:
# every pair as a point, its IF under two families; points in the top-left and bottom-right quadrants
# help one model and hurt the other.

# %% [markdown]
# ## 4. Control: the same family from another random start
#
# Two families differ in architecture *and* in their random initialization. To know how much of the
# disagreement is the family, the first family is trained again from other model seeds on the same
# pairs. The claim needs the cross-family Spearman to be clearly (by `margin`) below this
# within-family one; if IF already disagrees across seeds of one family, the families add little.

# %%
# one control per seed (the same seeds as the families), so that the verdict compares matched seeds
controls = {s: R.model_dependence(c, keep, p.select) for s, c in runs["controls"].items() if len(c) > 1}
control = [controls[s] for s in mds if s in controls] or None
cross = pd.concat([m.pairs().assign(seed=s) for s, m in mds.items()], ignore_index=True)
within = (pd.concat([m.pairs().assign(seed=s) for s, m in controls.items()], ignore_index=True) if controls
          else pd.DataFrame())
if controls:
    matched = pd.DataFrame({"cross-family Spearman": cross.groupby("seed").spearman.mean(),
                            "within-family Spearman": within.groupby("seed").spearman.mean()})
    matched["within minus cross"] = matched["within-family Spearman"] - matched["cross-family Spearman"]
    display(within[["seed", "family_a", "family_b", "spearman", "sign_disagreement", "tif_overlap"]].round(3))
    display(matched.round(3))
fig, ax = plt.subplots(figsize=(7.5, 0.34 * (len(cross) + len(within)) + 1.6))
lab = [f"{r.family_a} vs {r.family_b}" + (f" (seed {r.seed})" if len(nb.seeds) > 1 else "") for r in cross.itertuples()]
ax.barh(np.arange(len(cross)), cross.spearman, color="#4c72b0", label="two families, same world seed")
if len(within):
    ax.barh(len(cross) + np.arange(len(within)), within.spearman, color="#55a868",
            label=f"one family ({families[0]}), two model seeds")
    lab += [f"{r.family_a} vs {r.family_b}" + (f" (seed {r.seed})" if len(nb.seeds) > 1 else "")
            for r in within.itertuples()]
    ax.axvline(within.spearman.mean(), color="#55a868", ls="--", lw=1.2, label="within-family mean")
ax.axvline(cross.spearman.mean(), color="#4c72b0", ls=":", lw=1.5, label="cross-family mean")
ax.set_yticks(np.arange(len(lab)), lab)
ax.set_xlim(min(0.0, float(pd.concat([cross.spearman, within.get("spearman", pd.Series(dtype=float))]).min()) - 0.05), 1)
ax.set_xlabel("Spearman of IF on the same pairs")
ax.set_title("IF agreement: across families against across initializations")
ax.legend(frameon=False, fontsize=8, loc="lower right")
fig.tight_layout()
nb.figure(fig, "init_control")

# %% [markdown]
# **How to read it.** Blue bars compare two families, green bars two random starts of one family. If
# the blue bars sit well left of the green ones, the family changes what a pair is worth beyond what
# a new random start does; if they overlap, the disagreement is mostly seed noise.

# %% [markdown]
# ## 5. Transfer: select with one model, train another
#
# The practical test of claim 1. Family A scores the pairs and selects with `transfer_rule` (default
# the paper's LossDiff-IRM) at the budget $k$; family B is trained on A's selection (two epochs from
# B's own warm-up model, as every rule) and compared, paired on the same prompts, with B trained on
# its **own** selection and on **full data**. If value were a property of the pair, A's selection
# would serve B as well as B's own. How much the two selections share is their overlap coefficient
# $|S_A \cap S_B| / \min(|S_A|, |S_B|)$ (chance level: $k$).

# %%
if transfer_pairs is None:
    transfer_pairs = [["llama", "qwen"], ["qwen", "llama"]]
transfer_pairs = [tuple(x) for x in transfer_pairs if x[0] in fam_params and x[1] in fam_params]
from tifkit.select import select

ov = []
for src, dst in transfer_pairs:
    sa = select(tables[src], p.select, rule=transfer_rule, keep=keep).mask
    sb = select(tables[dst], p.select, rule=transfer_rule, keep=keep).mask
    ida = set(tables[src].pair_id[sa])
    idb = set(tables[dst].pair_id[sb])
    ov.append({"source": src, "target": dst, "kept": len(ida), "overlap": len(ida & idb) / min(len(ida), len(idb)),
               "chance": keep})
display(pd.DataFrame(ov).round(3))
transfer_pp = E.transfer_experiment(fam_params, {s: runs["families"][s] for s in nb.seeds}, transfer_pairs,
                                    transfer_rule, keep, workers)
transfer = E.transfer_summary(transfer_pp, n_bootstrap=p.run.n_bootstrap, seed=p.eval.seed)
transfer.round(3)

# %%
fig = plots.plot_transfer(transfer, title=f"Transfer of the {transfer_rule} selection (keep {keep:g}) across "
                                          f"families: {nb.scale} scale, seeds {nb.seeds}")
nb.figure(fig, "transfer")

# %% [markdown]
# **How to read it.** One panel per trained family: its WinRate against SFT when trained on full data,
# on its own selection, and on the other family's selection, with 95% intervals; the dashed line is
# 0.5, the dotted line its full-data WinRate. A transferred bar clearly below the own bar means the
# selection does not carry over between models.

# %% [markdown]
# ## 6. Conclusion
#
# Claim 1 holds when the families rank the pairs differently (mean cross-family Spearman below
# `agree`, and some pairs change sign) **and** by more than initializations of one family do (by at
# least `margin`), compared seed by seed: the control runs on every seed, and each seed's
# cross-family Spearman is set against the same seed's within-family one. If IF on these tiny models
# is itself unstable across random starts, much of the disagreement is seed dependence, not the
# family; the sentence below says which. The transfer result adds whether that matters for training.

# %%
claim1 = C.conclude_model_dependence(list(mds.values()), agree, control, margin)
tlines = []
for r in transfer[transfer.source.isin([s for s, _ in transfer_pairs])].itertuples():
    sig = ("worse than" if r.vs_own_hi < 0 else "better than" if r.vs_own_lo > 0 else "indistinguishable from")
    tlines.append(f"{r.target} trained on {r.source}'s selection: WinRate {r.winrate:.3f} [{r.winrate_lo:.3f}, "
                  f"{r.winrate_hi:.3f}], {sig} its own selection ({r.vs_own:+.1f} points [{r.vs_own_lo:+.1f}, "
                  f"{r.vs_own_hi:+.1f}]), {r.vs_full:+.1f} points against its full data")
n_worse = sum("worse than" in t for t in tlines)
transfer_text = (f"Transfer of the {transfer_rule} selection: in {n_worse} of {len(tlines)} cases the borrowed "
                 f"selection is worse than the model's own with an interval below 0. " + "; ".join(tlines) + ".")
conclusion = claim1 + "\n\n" + transfer_text
if nb.scale == "ci":
    conclusion += ("\n\n(CI scale: a toy world of 96 pairs with tiny models; this checks the code, not the claim: "
                   "the toy scale cannot tell.)")
if len(nb.seeds) == 1:
    conclusion += f"\n\nThe transfer intervals resample the test prompts of one seed only. {C.ONE_SEED}"
display(Markdown(conclusion))
nb.finish(claim1=claim1, conclusion_transfer=transfer_text, families=families, keep=keep,
          pairs=cross.to_dict("records"), control=within.to_dict("records"),
          transfer=transfer.to_dict("records"), transfer_overlap=ov)
