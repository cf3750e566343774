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
# # 03 · Fusion: LossDiff-IRM, and how much of TIF it recovers
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tifkit/tifkit/blob/main/notebooks/03_fusion.ipynb)
#
# Notebook 02 built two cheap proxies for influence: LossDiff (needs a validation model) and IRM (needs
# nothing but the warm-up model). *Towards Understanding Valuable Preference Data for Large Language Model
# Alignment* ([arXiv 2510.13212](https://arxiv.org/abs/2510.13212)) argues that they err in different
# ways, so it keeps a pair only when **both** sit in their middle band:
#
# $$ \mathrm{keep}(d) = \mathbb{1}\big[\,|\,r_{LD}(d) - c\,| \le m/2\big]\;\cdot\;\mathbb{1}\big[\,|\,r_{IRM}(d) - c\,| \le m/2\big], $$
#
# with $r$ a pair's rank as a percentile, $c = 0.5$ the centre and the band width $m$ the same for both,
# widened until the intersection holds the target share of the data. The question is how well this
# cheap rule reproduces the expensive one, the TIF band of exact IF (notebook 01). Two selections $A$
# and $B$ are compared by their **overlap coefficient**
#
# $$ \mathrm{overlap}(A, B) = \frac{|A \cap B|}{\min(|A|, |B|)}, $$
#
# 1 when the smaller is inside the larger; a random subset of the same size overlaps TIF by about the
# keep ratio.
#
# **Claim tested** (`docs/METHOD.md`): **claim 5**, LossDiff-IRM overlaps the TIF selection more than
# either proxy alone (paper: 0.73-0.78 against 0.60-0.70).
#
# **Hardware and time.** CPU only. Default scale from an empty cache on a fresh clone: **41 s** on 2 CPU
# cores (2026-11-27, load average about 2.5, i.e. little else running). Earlier measurements while
# other jobs loaded the machine follow. CPU only; no training beyond the shared stages. The default scale
# (`params/tiny.yaml`, 2,000 training pairs, one seed) from an empty cache: 2 min 29 s on 2 CPU cores
# that other jobs kept at a load average of about 11 (50 CPU-seconds in all, almost all of it the
# shared stages and scoring, so about a minute on an idle machine, an estimate); about 15 s once
# notebook 01 or 02 (or the batch) has scored the pairs.

# %% tags=["parameters"]
scale = None                  # None: $TIFKIT_NOTEBOOK_SCALE, else "default" (one seed, real size); "ci": toy; "full": all seeds
params_file = "tiny.yaml"     # a params file shipped with tifkit, or a path to your own
overrides = []                # extra settings in the form tifkit --set takes, e.g. train.objective set to slic
seeds = None                  # None: run.seed (default and ci scale) or run.study_seeds (full scale)
run_root = None               # None: the params file's run.root (runs/), or runs/nb-ci at ci scale
figures_dir = None            # None: <run root>/figures; the papermill batch passes figures/
keeps = [0.5, 0.56, 0.64, 0.72, 0.8]  # keep ratios of the overlap sweep
venn_keep = 0.64              # keep ratio of the band search figure and the Venn diagram

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
from matplotlib.patches import Rectangle

from tifkit import conclusions as C
from tifkit import experiments as E
from tifkit import notebooks as N
from tifkit import plots
from tifkit import report as R
from tifkit.select import select

nb = N.start("03_fusion", scale, params_file, overrides, seeds, run_root, figures_dir)
p = nb.p

# %% [markdown]
# ## 1. The scores
#
# The score table of notebook 02 (cached: shared with notebooks 01, 02 and the batch): `lossdiff`, `irm`
# and the exact `if` of every training pair.

# %%
tables = E.score_tables(p, nb.seeds)
t = tables[nb.seeds[0]]
n = len(t)
k = int(round(venn_keep * n))
print(f"{n} pairs (seed {nb.seeds[0]}); keep {venn_keep:g} means {k} pairs")
t[["pair_id", "lossdiff", "irm", "if"]].describe().T

# %% [markdown]
# ## 2. The band search, by hand
#
# Rank the pairs by each score (0 = smallest; ties by row order, as `tifkit.select` does). A band of $m$
# rank positions centred at $c\,n$ starts at $s(m) = \mathrm{round}(c\,n - m/2)$; a pair is kept when both of
# its ranks fall in $[s, s + m)$. Widening the band only adds pairs, so the count kept grows with $m$, and
# the rule takes the smallest $m$ that keeps at least $k$ pairs (`tifkit.select` finds it by bisection and
# drops the one extra pair a step can add, the farthest from the centre). Here we simply try every $m$.

# %%
sp = p.select
pos_ld = (sp.lossdiff_sign * t["lossdiff"]).rank(method="first").to_numpy() - 1
pos_irm = (sp.irm_sign * t["irm"]).rank(method="first").to_numpy() - 1


def both_in_band(m, center=sp.band_center):
    s = min(max(round(center * n - m / 2), 0), n - m)
    return (pos_ld >= s) & (pos_ld < s + m) & (pos_irm >= s) & (pos_irm < s + m)


counts = np.array([both_in_band(m).sum() for m in range(n + 1)])
m_star = int(np.argmax(counts >= k))
by_hand = both_in_band(m_star)
fused = select(t, sp, rule="lossdiff-irm", keep=venn_keep)
print(f"smallest band: {m_star} of {n} rank positions (width {m_star / n:.3f}) keeps {by_hand.sum()} pairs "
      f"(target {k}); tifkit.select: width {fused.details['width']:.3f}, {fused.n_kept} pairs, "
      f"{(by_hand & ~fused.mask).sum()} pair(s) trimmed, {(fused.mask & ~by_hand).sum()} added")

# %% [markdown]
# The same selection drawn on the two scores: the kept pairs form a rectangle (a square in rank space),
# whose edges are the band's raw-value limits. We also mark which pairs exact TIF keeps at the same
# budget, and which are mislabelled.

# %%
tif = select(t, sp, rule="tif", keep=venn_keep).mask
flip = t.gt_flipped.to_numpy(dtype=bool)
b_ld, b_irm = fused.bands["lossdiff"], fused.bands["irm"]
fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1.5, 1]})
ax = axes[0]
groups = [(fused.mask & tif, plots.color("lossdiff-irm"), "kept by LossDiff-IRM and by TIF"),
          (fused.mask & ~tif, "#dd8452", "kept by LossDiff-IRM, not by TIF"),
          (~fused.mask & tif, plots.color("tif"), "kept by TIF only"),
          (~fused.mask & ~tif, "#bbbbbb", "kept by neither")]
for m, col, label in groups:
    ax.scatter(t.lossdiff[m], t.irm[m], s=7, alpha=0.6, color=col, label=f"{label} ({m.sum()})")
ax.scatter(t.lossdiff[flip], t.irm[flip], s=9, marker="x", color="#8b0000", lw=0.6, alpha=0.7,
           label=f"mislabelled (ground truth, {flip.sum()})")
ax.add_patch(Rectangle((b_ld["lo_value"], b_irm["lo_value"]), b_ld["hi_value"] - b_ld["lo_value"],
                       b_irm["hi_value"] - b_irm["lo_value"], fill=False, color="#333333", lw=1.5,
                       label=f"the two bands (width {fused.details['width']:.2f} each)"))
ax.set_xlim(*np.quantile(t.lossdiff, [0.005, 0.995]))
ax.set_ylim(*np.quantile(t.irm, [0.005, 0.995]))
ax.set_xlabel("LossDiff(d) = loss at warm-up minus loss at the validation model (nats)")
ax.set_ylabel("IRM(d) = implicit reward margin h at warm-up")
ax.set_title(f"LossDiff-IRM keeps the pairs inside both bands (keep {venn_keep:g})")
ax.legend(frameon=False, fontsize=7, loc="upper left", markerscale=2)
ax = axes[1]
ax.plot(np.arange(n + 1) / n, counts / n, color=plots.color("lossdiff-irm"), lw=2, label="share kept by both bands")
ax.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1, label="one band alone keeps its width")
ax.axhline(venn_keep, color="#333333", ls="--", lw=1, label=f"target share {venn_keep:g}")
ax.axvline(m_star / n, color="#c44e52", lw=1, label=f"smallest width reaching it: {m_star / n:.3f}")
ax.set_xlabel("band width (share of rank positions, the same for both scores)")
ax.set_ylabel("share of pairs kept")
ax.set_title("The band search")
ax.legend(frameon=False, fontsize=8, loc="upper left")
fig.tight_layout()
nb.figure(fig, "band_search")

# %% [markdown]
# **How to read it.** Left: every pair at its (LossDiff, IRM); the box is the pair of bands the search
# settled on, the pairs inside it are kept; purple ones TIF keeps too, tan ones outside the box are pairs
# exact IF values but a cheap band cuts. Right: the share kept as both bands widen; if the two scores
# agreed perfectly the curve would be the dotted diagonal.

# %% [markdown]
# ## 3. The overlap coefficient
#
# In numpy, for the fused rule and each proxy alone (each keeps the same $k$ pairs), against TIF; a random
# subset is the chance level.

# %%
rng = np.random.default_rng(0)
rand = np.zeros(n, dtype=bool)
rand[rng.choice(n, size=k, replace=False)] = True
sel = {"lossdiff-irm": fused.mask, "lossdiff": select(t, sp, rule="lossdiff", keep=venn_keep).mask,
       "irm": select(t, sp, rule="irm", keep=venn_keep).mask, "top-if": select(t, sp, rule="top-if", keep=venn_keep).mask,
       "random": rand}
overlap = {name: (a & tif).sum() / min(a.sum(), tif.sum()) for name, a in sel.items()}
pd.DataFrame({"pairs kept": {name: a.sum() for name, a in sel.items()},
              "in TIF too": {name: (a & tif).sum() for name, a in sel.items()}, "overlap with TIF": overlap}).round(3)

# %% [markdown]
# ## 4. The overlap across keep ratios
#
# The paper's comparison at one budget could be luck; `report.overlap_sweep` repeats it (the same formula)
# at each keep ratio in `keeps`, for every seed.

# %%
sweep = pd.concat([R.overlap_sweep(ts, keeps, select_params=sp).assign(seed=s) for s, ts in tables.items()],
                  ignore_index=True)
if venn_keep in keeps:  # the sweep's number at venn_keep is section 3's
    same = sweep[(sweep.seed == nb.seeds[0]) & (sweep.keep == venn_keep) & (sweep.rule == "lossdiff-irm")]
    assert abs(same.overlap.iloc[0] - overlap["lossdiff-irm"]) < 1e-12
fig = plots.plot_overlap_sweep(sweep, title=f"Overlap with the TIF selection by keep ratio ({nb.scale} scale, "
                                            f"seed(s) {nb.seeds})")
nb.figure(fig, "overlap_sweep")
sweep.pivot_table(index="keep", columns="rule", values="overlap").round(3)

# %% [markdown]
# **How to read it.** Each line is a rule's overlap with TIF at the same keep ratio (higher = closer to
# the exact rule); the dashed line is chance and the shaded bands the paper's ranges. Claim 5 wants the
# thick LossDiff-IRM line above both single proxies.

# %% [markdown]
# ## 5. Who recovers which TIF pairs
#
# The three selections at `venn_keep` as a Venn diagram: the count in each region is the number of pairs
# kept by exactly those rules. LossDiff-IRM keeps (mostly) pairs inside both the LossDiff and the IRM
# circles.

# %%
venn = R.venn_counts(t, venn_keep, ("tif", "lossdiff", "irm"), sp)
fig = plots.plot_venn3(venn, f"TIF, LossDiff band and IRM band at keep {venn_keep:g}: {venn['n']} pairs "
                             f"(seed {nb.seeds[0]})")
nb.figure(fig, "venn")
print(f"LossDiff-IRM keeps {fused.n_kept} pairs; {(fused.mask & tif).sum()} of them are in TIF's {tif.sum()}")

# %% [markdown]
# **How to read it.** The centre counts pairs all three rules keep; the regions of one circle only are
# pairs one rule keeps alone. A large TIF-only region means the cheap scores miss pairs exact IF values.

# %% [markdown]
# ## 6. Conclusion
#
# Claim 5 stated from this run's overlaps, beside the paper's ranges. When IRM tracks IF only weakly
# (notebook 02 measures how well), intersecting LossDiff's band with IRM's cannot be expected to raise
# the overlap with TIF above LossDiff's own; the sentence says what happened here.

# %%
claim5 = C.conclude_overlap(sweep)
if nb.scale == "ci":
    claim5 += (" CI scale: a toy world of a few dozen pairs and a tiny model: the toy scale cannot tell whether the "
               "claim holds; this run checks the code only.")
display(Markdown(claim5))
nb.finish(claim5=claim5, overlap_at_keep=overlap, band_width=fused.details["width"],
          overlap=sweep.groupby(["keep", "rule"]).overlap.mean().reset_index().to_dict("records"), venn=venn)
