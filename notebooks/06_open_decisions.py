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
# # 06 · Open decisions: which claims survive the choices the paper leaves open
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tifkit/tifkit/blob/main/notebooks/06_open_decisions.ipynb)
#
# *Towards Understanding Valuable Preference Data for Large Language Model Alignment* (Zhang et al., ICLR
# 2026, [arXiv 2510.13212](https://arxiv.org/abs/2510.13212)) describes its pipeline in words, and several
# choices a reimplementation must make are not in those words: where the validation model starts, what
# exactly IF measures on the validation set, where the "middle" band sits, the DPO temperature $\beta$,
# whether log-probabilities are summed or averaged over tokens, and what kind and how much label noise the
# data carries. tifkit makes each of them a parameter (`docs/METHOD.md`, "our decisions"). This notebook
# changes them **one at a time** and recomputes the statistic behind each claim, to tell the claims that
# are robust from those that hinge on one choice.
#
# The claims are read as signs: a claim *holds* when its statistic is above its null value with a 95%
# interval over seeds that excludes the null, e.g. for claim 4
# $\;r(\mathrm{LossDiff}, \mathrm{IF}) = \frac{\mathrm{cov}(\mathrm{LossDiff}, \mathrm{IF})}{\sigma_{\mathrm{LossDiff}}\,\sigma_{\mathrm{IF}}} > 0$.
#
# **Claims tested** (numbers of `docs/METHOD.md`): **4** (LossDiff and IRM correlate positively with IF,
# LossDiff more strongly), **5** (LossDiff-IRM overlaps the TIF selection more than either proxy alone),
# and, read against full data, **3/6** (WinRate of TIF and of LossDiff-IRM minus that of full data; claim 3
# proper, TIF against top-IF, is notebook 01's), plus the AUROC of each score for finding the mislabelled
# pairs, a diagnostic the README reports.
#
# **Hardware and time.** CPU only. Default scale from an empty cache on a fresh clone: **1 min 17 s** on 2 CPU
# cores (2026-11-27, load average about 2.5, i.e. little else running). Earlier measurements while
# other jobs loaded the machine follow. CPU only. The default scale (`scale = None`) sweeps a smaller world (600
# training pairs, `sweep_n_train`), one seed, one or two values per decision and no noise-type setting
# (9 settings; each label-noise setting builds a world and an SFT model of its own). From an empty
# cache it took 6 min of wall time on a 2-core machine shared with other jobs (load average about 11),
# 130 CPU-seconds in all, so roughly 2 minutes on an idle 2-core machine (an estimate, not a
# measurement). The full scale (`make reproduce`: the first 3 seeds, every value of
# `experiments.OPEN_DECISIONS`, 12 settings) used 461 CPU-seconds (25 min of wall time at load 10-14;
# roughly 4-5 minutes idle, estimated the same way). Settings run in parallel worker processes, one
# torch thread each; every stage is cached, so a rerun trains nothing (the full scale again: 1.6 min).

# %% tags=["parameters"]
scale = None                  # None: $TIFKIT_NOTEBOOK_SCALE, else "default" (one seed, real size); "ci": toy; "full": all seeds
params_file = "tiny.yaml"     # a params file shipped with tifkit, or a path to your own
overrides = []                # extra overrides as strings, written as for --set (e.g. train.objective to slic)
seeds = None                  # None: run.seed (default and ci scale) or the first 3 of run.study_seeds (full scale)
run_root = None               # None: the params file's run.root (runs/), or runs/nb-ci at ci scale
figures_dir = None            # None: <run root>/figures; the papermill batch passes figures/
decisions = None              # None: the scale's sweep (below); or {name: [parameter, [values]]}
winrate_top = 3               # WinRate is measured for this many decisions, those that move the scores most
sweep_n_train = 600           # training pairs of the swept world at the default and full scales (ci: 96)
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
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from IPython.display import Markdown, display
from scipy import stats

from tifkit import conclusions as C
from tifkit import experiments as E
from tifkit import notebooks as N
from tifkit.stats import seeds_needed

extra = [] if N.resolve_scale(scale) == "ci" or not sweep_n_train else [f"world.n_train={int(sweep_n_train)}"]
nb = N.start("06_open_decisions", scale, params_file, list(overrides) + extra, seeds, run_root, figures_dir)
p = nb.p
run_seeds = nb.seeds if seeds is not None else nb.seeds[:3]
print(f"seeds of the sweep: {run_seeds}")

# %% [markdown]
# ## 1. The decisions
#
# Each row below is one parameter and the values the sweep tries besides the run's own (the
# *default* column of every table). What a change reruns differs, and so does its cost:
#
# - `train.val_start` (validation model from the warm-up model $\theta$ or from SFT) and `train.beta`
#   retrain the warm-up and validation models, then rescore;
# - `score.if_measure` and `score.reduction` only rescore. The IF measurement is the gradient the
#   training gradient is dotted with:
#
# $$ \mathrm{IF}(d) = \Big\langle \nabla_\theta \ell(\theta; d),\; \tfrac{1}{|D_{val}|}\textstyle\sum_{v} \nabla_\theta m(\theta; v) \Big\rangle, $$
#
#   with $m = \ell$ (the mean validation loss, `val_loss`, the paper's IF), $m = -h$ (the validation
#   margin: no $\sigma(-h_v)$ weights on the validation side, `val_margin`), or margins on both sides
#   (`unweighted`);
# - `select.band_center` only reselects (it moves the TIF band and the proxies' bands together);
# - `world.systematic` (0 = random flips, 0.8 = mostly a verbosity-biased annotator) and
#   `world.flip_rate` (the share of forced flips) build another world, hence another SFT model too.

# %%
scale_decisions = {
    "full": E.OPEN_DECISIONS,
    "default": {"validation-model start": ("train.val_start", ("sft",)),
                "IF measurement": ("score.if_measure", ("val_margin", "unweighted")),
                "band centre": ("select.band_center", (0.35, 0.65)),
                "beta": ("train.beta", (0.1,)),
                "log-prob reduction": ("score.reduction", ("mean",)),
                "flip rate": ("world.flip_rate", (0.35,))},  # noise type: full scale only (one more SFT model)
}
# ci: a toy check of the code; no label-noise setting (each builds a world and SFT model of its own)
scale_decisions["ci"] = {k: v for k, v in scale_decisions["default"].items() if k != "flip rate"}
scale_decisions["ci"]["IF measurement"] = ("score.if_measure", ("val_margin",))
scale_decisions["ci"]["band centre"] = ("select.band_center", (0.35,))
chosen = decisions if decisions is not None else scale_decisions[nb.scale]
settings = pd.DataFrame(E.decision_settings(p, chosen))
settings["default value"] = [
    "" if not s else getattr(getattr(p, s.split(".")[0]), s.split(".")[1]) for s in settings.parameter]
settings

# %% [markdown]
# ## 2. Run the sweep
#
# `experiments.decision_sweep` does the heavy part in worker processes, through the pipeline's cached
# stages (a rerun trains nothing): for every setting and seed the SFT, warm-up and validation models and
# the score table (IRM, LossDiff, IF); the statistics of section 3 on each table; then the WinRate runs of
# section 5. Only the statistics are computed here: the tables stay on disk.

# %%
top = min(winrate_top, 1) if nb.scale == "ci" else winrate_top  # ci: one decision's WinRate (time)
sweep = E.decision_sweep(p, run_seeds, chosen, winrate_top=top, workers=workers)
print(f"sweep: {len(sweep['stats'])} score tables and {sweep['per_prompt'].groupby(['setting', 'seed', 'rule']).ngroups} "
      f"WinRate evaluations in {sweep['seconds']:.0f} s")
sweep["stats"].drop(columns=["parameter", "value"]).set_index(["setting", "seed"])

# %% [markdown]
# ## 3. The statistic behind each claim, computed by hand on the default run
#
# For one score table (the default setting, first seed):
#
# - **claim 4**: Pearson $r$ and Spearman $\rho$ (the Pearson $r$ of the ranks) of LossDiff and of IRM
#   with IF;
# - **claim 5**: the overlap coefficient of two selections $A, B$ of the same size,
#   $\;\mathrm{ov}(A, B) = \frac{|A \cap B|}{\min(|A|, |B|)}$, between the TIF selection (IF in the middle
#   band of width `select.keep`) and each proxy's selection; the claim is that the fusion beats the
#   better single proxy: $\mathrm{ov}(\text{LossDiff-IRM}, \text{TIF}) - \max(\mathrm{ov}(\text{LossDiff}, \text{TIF}), \mathrm{ov}(\text{IRM}, \text{TIF})) > 0$;
# - **AUROC** of a score for the mislabelled pairs (a low score flags one): the probability that a random
#   mislabelled pair scores below a random clean one (0.5 = chance). The world's ground truth is read
#   here for evaluation only; no score or selection sees it.

# %%
from tifkit.select import select

t = pd.read_parquet(sweep["tables"]["default", run_seeds[0]])
keep = p.select.keep
r_ld, _ = stats.pearsonr(t.lossdiff, t["if"])
r_irm, _ = stats.pearsonr(t.irm, t["if"])
rho_ld, _ = stats.spearmanr(t.lossdiff, t["if"])
masks = {rule: select(t, p.select, rule=rule).mask  # the run's select section (keep, band centre) with this rule
         for rule in ("tif", "lossdiff", "irm", "lossdiff-irm")}
overlap = {rule: (masks[rule] & masks["tif"]).sum() / min(masks[rule].sum(), masks["tif"].sum())
           for rule in ("lossdiff-irm", "lossdiff", "irm")}
flipped = t.gt_flipped.to_numpy(bool)


def auroc(score):  # Mann-Whitney: P(score of a mislabelled pair < score of a clean one), ties 1/2
    ranks = stats.rankdata(-np.asarray(score))
    n1, n0 = flipped.sum(), (~flipped).sum()
    return (ranks[flipped].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


by_hand = {"pearson_lossdiff_if": r_ld, "pearson_irm_if": r_irm, "spearman_lossdiff_if": rho_ld,
           **{f"overlap_{k}": v for k, v in overlap.items()}, "auroc_if": auroc(t["if"]), "auroc_irm": auroc(t.irm)}
kit = sweep["stats"].query("setting == 'default' and seed == @run_seeds[0]").iloc[0]
check = pd.DataFrame({"by hand": by_hand, "decision_sweep": {k: kit[k] for k in by_hand}})
assert np.allclose(check["by hand"], check["decision_sweep"]), check
print(f"{len(t)} pairs, {flipped.mean():.1%} mislabelled, {masks['tif'].sum()} kept by TIF")
check

# %% [markdown]
# The figure shows the two proxies against IF on this table, with the TIF band (the middle `keep`
# share of IF, drawn with `np.quantile`) shaded: claim 4 is about the slope of these clouds, claim 5
# about how many of the points inside the band the proxies' own bands catch.

# %%
c = p.select.band_center
lo_q, hi_q = np.quantile(t["if"], np.clip([c - keep / 2, c + keep / 2], 0, 1))
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for ax, col, r in zip(axes, ("lossdiff", "irm"), (r_ld, r_irm)):
    sns.scatterplot(x=t["if"], y=t[col], hue=np.where(flipped, "mislabelled", "clean"), s=12, alpha=0.6, ax=ax,
                    palette={"clean": "tab:blue", "mislabelled": "tab:red"})
    ax.axvspan(lo_q, hi_q, color="tab:green", alpha=0.12, label=f"TIF band (middle {keep:.0%} of IF)")
    ax.set(xlabel="IF = <grad loss(d), g_val> (gradient inner product)",
           ylabel="LossDiff (DPO loss, nats)" if col == "lossdiff" else "IRM h = beta x log-ratio margin (nats)",
           title=f"{'LossDiff' if col == 'lossdiff' else 'IRM'} against IF: Pearson r = {r:.2f}")
    ax.legend(loc="best", fontsize=8)
fig.suptitle(f"Default setting, seed {run_seeds[0]}, {len(t)} pairs ({nb.scale} scale)")
fig.tight_layout()
nb.figure(fig, "default_scatter")

# %% [markdown]
# **How to read it.** Each point is a training pair; a cloud rising to the right is a positive correlation
# with IF (claim 4). Red points are mislabelled: a score that puts them low finds them (AUROC > 0.5).

# %% [markdown]
# ## 4. Claim x decision
#
# For every setting, the claim statistics of each seed, their mean and a 95% Student-$t$ interval over
# seeds, $\bar x \pm t_{n-1, 0.975}\, s/\sqrt{n}$ (the trained model is the unit that varies), cut to the
# values the statistic can take (a correlation's interval at three seeds can otherwise reach past 1).
# The WinRate rows (section 5) use the paired hierarchical bootstrap of `tifkit.stats` (seeds, then
# prompts within a seed). **holds** (✓) = interval above the null, **fails** (✗) = below, **unclear** (?)
# = it straddles the null. One seed cannot show how much trained models differ, so from one seed a
# cell gives only a direction, **above** (↑) or **below** (↓) the null, not a verdict.
#
# Some settings cannot move a statistic at all: the band centre changes which pairs TIF keeps but no
# correlation between scores, for one. A cell whose per-seed values are exactly the default's is marked
# **=** and counts as no evidence either way (it is left out of section 6's counts); the code finds
# these from the values, nothing is assumed about which setting touches which score.

# %%
claims = sweep["claims"]
mark = {"holds": "✓", "fails": "✗", "unclear": "?", "above": "↑", "below": "↓", "n/a": ""}


def cell(r):
    if not r.moved:
        return "= default"
    iv = f" [{r.lo:+.2f}, {r.hi:+.2f}]" if np.isfinite(r.lo) else ""
    return f"{r.estimate:+.2f}{iv} {mark[r.verdict]}"


order = [s for s in settings.setting if s in set(claims.setting)]
table = (claims.assign(text=[cell(r) for r in claims.itertuples()])
         .pivot(index="label", columns="setting", values="text")
         .reindex(index=[E.DECISION_CLAIMS[k][0] for k in E.DECISION_CLAIMS if k in set(claims.claim)], columns=order)
         .fillna("not run"))
table.columns.name = None
table

# %% [markdown]
# The heatmap draws the same table. Colour is the verdict (blue: holds, red: fails, grey: unclear; pale
# blue and pale red: a one-seed direction; white: not measured, or **=**, a setting that cannot move the
# statistic), so a cell whose interval straddles the null looks unclear however large its estimate;
# each cell carries the estimate and its mark.

# %%
est = claims.pivot(index="claim", columns="setting", values="estimate").reindex(columns=order)
nulls = pd.Series({k: v[1] for k, v in E.DECISION_CLAIMS.items()})
rows = [k for k in E.DECISION_CLAIMS if k in est.index]
verdicts = claims.pivot(index="claim", columns="setting", values="verdict").reindex(index=rows, columns=order)
moved = claims.pivot(index="claim", columns="setting", values="moved").reindex(index=rows, columns=order)
code = verdicts.map(lambda v: E.VERDICTS.index(v) if v in E.VERDICTS else np.nan).astype(float).where(moved != False)  # noqa: E712
annot = (est.loc[rows].map(lambda v: "" if pd.isna(v) else f"{v:+.2f}")
          + verdicts.map(lambda v: "" if pd.isna(v) else "\n" + mark[v]))
fig, ax = plt.subplots(figsize=(1.0 * len(order) + 4, 0.55 * len(rows) + 2.5))
verdict_cmap = ListedColormap(["#d6604d", "#f4c2b4", "#e0e0e0", "#b9d7ea", "#4393c3"])  # in E.VERDICTS' order
sns.heatmap(code, annot=annot, fmt="", cmap=verdict_cmap, vmin=-0.5, vmax=len(E.VERDICTS) - 0.5, ax=ax,
            annot_kws={"fontsize": 7}, cbar_kws={"label": "verdict", "ticks": list(range(len(E.VERDICTS)))},
            yticklabels=[E.DECISION_CLAIMS[k][0] for k in rows], linewidths=0.5, linecolor="white")
ax.collections[0].colorbar.set_ticklabels([f"{v} ({mark[v]})" for v in E.VERDICTS])
for i, key in enumerate(rows):  # seaborn writes no annotation on an empty cell: mark "cannot move" by hand
    for j, setting in enumerate(order):
        if moved.loc[key, setting] == False:  # noqa: E712 (NaN: not measured, no mark)
            ax.text(j + 0.5, i + 0.5, "=", ha="center", va="center", fontsize=10, color="#666666")
ax.set(xlabel="setting (one parameter changed from the default)", ylabel="claim statistic",
       title=f"Claims under each open decision: mean over {len(run_seeds)} seed(s); "
             f"= cannot move it ({nb.scale} scale)")
ax.tick_params(axis="x", labelrotation=40)
plt.setp(ax.get_xticklabels(), ha="right")
fig.tight_layout()
nb.figure(fig, "claims_heatmap")

# %% [markdown]
# **How to read it.** Read a row from left to right: a claim that keeps its colour and its mark in every
# column where it can move is robust; one whose mark changes in one decision's columns hinges on that
# decision. Blank cells in the WinRate rows are settings whose WinRate was not measured (section 5).

# %% [markdown]
# ## 5. WinRate for the decisions that move the claims most
#
# Training and judging every setting would cost as much as the whole batch again, so WinRate is measured
# for the default and for the `winrate_top` decisions whose setting moves a score-based claim statistic
# the most (the largest $|\text{statistic} - \text{default}|$ over the claim rows, ranked below). For each,
# full data, TIF and LossDiff-IRM at keep = `select.keep` are trained two epochs from that setting's
# warm-up model and judged against its SFT model by the oracle; the paired difference
# $\;\mathrm{WinRate}(\text{rule}) - \mathrm{WinRate}(\text{full})$ on the same prompts is the statistic
# of claims 3/6.

# %%
ranking = sweep["ranking"].assign(winrate_measured=lambda d: d.setting.isin(sweep["winrate_settings"]))
ranking

# %%
pp = sweep["per_prompt"]
if len(pp):
    wr = (pp.groupby(["setting", "rule"]).verdict.mean().unstack("rule")
          .reindex([s for s in sweep["winrate_settings"] if s in set(pp.setting)]))
    for rule in [c for c in wr.columns if c != "full"]:
        wr[f"{rule} minus full (points)"] = 100 * (wr[rule] - wr["full"])
    display(wr.round(3))

# %% [markdown]
# **Can a setting move a rule at all?** Some settings cannot change what a rule keeps: IF never reads
# the validation model, and LossDiff-IRM never reads IF. When a setting leaves a rule's selection
# identical to the default's (the same pair ids kept, seed by seed) and its judged answers identical
# too, that rule's WinRate under the setting is the default's by construction, not a finding. The
# cell below checks this from the selections and the verdicts; nothing is assumed about which setting
# touches which score.

# %%
setting_rows = sweep["settings"].set_index("setting")


def rule_label(rules, prefix):
    return next((r for r in sorted(rules) if r == prefix or r.startswith(prefix + "-")), None)


def unmoved_rules():
    """Per measured setting and rule: is its selection (kept pair ids) the default's in every seed, and are
    its per-prompt verdicts the default's?"""
    out = []
    for s in [x for x in sweep["winrate_settings"] if x != "default" and x in set(pp.setting)]:
        row = setting_rows.loc[s]
        q = E.setting_params(p, row.parameter, row.value)
        for prefix in ("tif", "lossdiff-irm"):
            lab_d, lab_s = rule_label(set(pp[pp.setting == "default"].rule), prefix), rule_label(
                set(pp[pp.setting == s].rule), prefix)
            if lab_d is None or lab_s is None:
                continue
            same_sel = not str(row.parameter).startswith("world.")  # another world: other pairs, never the same
            for seed in run_seeds:
                if not same_sel:
                    break
                td, ts = (pd.read_parquet(sweep["tables"][k, seed]) for k in ("default", s))
                kept_d = set(td.pair_id[select(td, p.select, rule=prefix).mask])
                kept_s = set(ts.pair_id[select(ts, q.select, rule=prefix).mask])
                same_sel = kept_d == kept_s
            a, b = ((pp[(pp.setting == k) & (pp.rule == lab)].sort_values(["seed", "prompt_idx"]).verdict.to_numpy())
                    for k, lab in (("default", lab_d), (s, lab_s)))
            out.append({"setting": s, "rule": prefix, "same_selection": bool(same_sel),
                        "same_verdicts": bool(len(a) == len(b) and np.array_equal(a, b))})
    return pd.DataFrame(out, columns=["setting", "rule", "same_selection", "same_verdicts"])


unmoved = unmoved_rules() if len(pp) else pd.DataFrame(columns=["setting", "rule", "same_selection", "same_verdicts"])
cannot = unmoved[unmoved.same_selection]
cannot_lines = [f"{r.setting} leaves {r.rule}'s selection identical to the default's in every seed"
                + (", and its judged answers too: this setting cannot move that rule's WinRate, so its cell repeats the "
                   "default's" if r.same_verdicts else
                   "; the model trained on it still differs (the setting changes training), so its WinRate may move")
                for r in cannot.itertuples()]
display(Markdown("\n".join(f"- {x}." for x in cannot_lines) if cannot_lines else
                 "Every measured setting changes the selection of both rules."))

# %% [markdown]
# ## 6. Conclusion
#
# For each claim: its verdict at the default, and whether any setting that can move it changes it
# ("robust", "hinges on one decision", or on several; the settings marked **=** above are left out and
# named). `decision_robustness` computes it from the claim table above.

# %%
rob = sweep["robustness"].set_index("claim")


def power_note(key):
    """The seeds 80% power needs at the default's observed effect and seed-to-seed spread (a paired
    t-test over the per-seed values against the null: tifkit.stats.seeds_needed)."""
    row = claims[(claims.claim == key) & (claims.setting == "default")]
    if row.empty:
        return ""
    r = row.iloc[0]
    n = seeds_needed(np.array(list(json.loads(r.per_seed).values()), dtype=float) - r.null)
    if n is None:
        return ""
    return (f"; 80% power at the default's effect and spread needs {n if n <= 10000 else 'more than 10000'} seeds "
            f"(this sweep has {r.n_seeds})")


lines = []
for key, r in rob.iterrows():
    lines.append(f"- **{r.label}**: {r.default_verdict} at the default ({r.default_estimate:+.2f}); "
                 f"{r.status}" + (f" (differs under {r.differs_under})" if r.differs_under else
                                  "" if r.n_settings == 1 else f" across all {r.n_settings} settings that can move it")
                 + (f"; cannot move it: {r.cannot_move}" if r.cannot_move else "") + power_note(key) + ".")
status = rob.status
same = status.eq("robust") | status.str.endswith("under every setting")  # the default's verdict everywhere
unclear_all = status.eq("unclear under every setting")
only_default = status.str.startswith("default only") | status.eq("no setting tried can move it")
conclusion = (f"Over {len(sweep['stats'].setting.unique())} settings and {len(run_seeds)} seed(s), "
              f"{int(same.sum())} of {len(rob)} claim statistics keep their default verdict under every decision "
              f"tried ({int(unclear_all.sum())} of them unclear throughout); "
              f"{int((~same & ~only_default).sum())} change with at least one decision"
              + (f" (most moving: {', '.join(sweep['ranking'].decision.head(3))})" if len(sweep['ranking']) else "")
              + (f"; {int(only_default.sum())} measured at the default only or not movable by any setting tried"
                 if only_default.any() else "") + ".")
mechanisms = C.decision_mechanisms(claims[claims.moved])
if len(run_seeds) == 1:
    conclusion += (" With one seed every cell gives only a direction (above or below the null), no interval "
                   f"over trained models. {C.ONE_SEED}")
if nb.scale == "ci":
    conclusion += " (CI scale: a toy world of a few dozen pairs; this checks the code, not the claims.)"
display(Markdown(conclusion + "\n\n" + "\n".join(lines)
                 + ("\n\nWhy a decision changes a verdict (one sentence per decision that does):\n\n"
                    + "\n".join(f"- {m}" for m in mechanisms) if mechanisms else "")
                 + ("\n\nSettings that cannot move a rule:\n\n" + "\n".join(f"- {x}." for x in cannot_lines)
                    if cannot_lines else "")))


def claim_text(keys):
    return "; ".join(f"{rob.loc[k, 'label']}: {rob.loc[k, 'default_verdict']} at the default, {rob.loc[k, 'status']}"
                     for k in keys if k in rob.index) or "not measured (winrate_top = 0)"


nb.finish(conclusion=conclusion, claim3=claim_text(["c3_winrate"]), claim4=claim_text(["c4_lossdiff", "c4_irm", "c4_order"]),
          claim5=claim_text(["c5_fusion"]), claim6=claim_text(["c6_winrate"]),
          robustness=sweep["robustness"].to_dict("records"), ranking=sweep["ranking"].to_dict("records"),
          # every statistic under every setting, with `moved` (False: the setting cannot move it; the
          # README's column counts only the others and names these apart)
          statistics=claims.drop(columns=["label"]).to_dict("records"),
          cannot_move=claims[~claims.moved][["claim", "setting"]].to_dict("records"), sweep_seconds=sweep["seconds"],
          mechanisms=mechanisms, unmoved=unmoved.to_dict("records"), sweep_seeds=run_seeds)
