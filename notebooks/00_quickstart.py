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
# # 00 · Quickstart: a preference world, SFT, DPO and a WinRate
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tifkit/tifkit/blob/main/notebooks/00_quickstart.ipynb)
#
# This kit reproduces *Towards Understanding Valuable Preference Data for Large Language Model
# Alignment* (Zhang et al., ICLR 2026, [arXiv 2510.13212](https://arxiv.org/abs/2510.13212)). The paper
# asks which preference pairs are worth training on, **for a given model**, and answers with the
# influence of each pair on a validation set. Everything it measures needs a pipeline first: a
# reference model, a policy trained by DPO, and a judge. This notebook builds that pipeline once, on a
# small world where the truth is known, so that the other notebooks can ask their questions of it.
#
# **What you will see.** The built-in preference world and its oracle; noisy preference labels, some
# of them written by a biased annotator; a tiny language model taught the task by SFT; one epoch of
# DPO on every pair (the *warm-up* model of the paper's pipeline) and two more (*full data*, the
# baseline every selection rule must beat); and a WinRate against the SFT model judged by the oracle.
#
# **Hardware and time.** CPU only. `scale = None` runs the default scale (the world of
# `params/tiny.yaml`, 2,000 training pairs, one seed): 30 s on 2 CPU cores from an empty cache
# (measured on a fresh clone, 2026-11-27), seconds once the stages are cached. The method is written up in `docs/METHOD.md`; timings of
# every notebook are in `docs/NOTEBOOKS.md`.

# %% tags=["parameters"]
scale = None                  # None: $TIFKIT_NOTEBOOK_SCALE, else "default" (one seed, real size); "ci": toy; "full": all seeds
params_file = "tiny.yaml"     # a params file shipped with tifkit, or a path to your own
overrides = []                # extra overrides as strings, written as for --set (e.g. train.objective to slic)
seeds = None                  # None: run.seed (default and ci scale) or run.study_seeds (full scale)
run_root = None               # None: the params file's run.root (runs/), or runs/nb-ci at ci scale
figures_dir = None            # None: <run root>/figures; the papermill batch passes figures/

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
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from tifkit import notebooks as N
from tifkit import plots

nb = N.start("00_quickstart", scale, params_file, overrides, seeds, run_root, figures_dir)
p = nb.p

# %% [markdown]
# ## 1. The preference world
#
# A prompt asks for its letters in sorted order: `sort dbca:` should be answered `abcd`. A hidden
# **oracle** scores any response $y$ against the target $t$ with partial credit per position,
#
# $$ r^*(x, y) = \frac{\#\{i : y_i = t_i\}}{\max(|y|, |t|)}, $$
#
# so a wrong letter, a dropped letter and anything appended (such as the verbose sign-off `!!` that
# some writers add) all cost reward. The oracle is the ground truth a real study never has: here we
# can check every claim against it. Try it:

# %%
from tifkit.world import oracle_reward

for response in ["abcd", "abdc", "abc", "abcd!!", "dcba"]:
    print(f"sort dbca: -> {response!r:9} r* = {oracle_reward('sort dbca:', response):.2f}")

# %% [markdown]
# ## 2. The data
#
# `prepare` builds the world for one seed and splits it: $D_{tr}$ (training pairs), $D_{val}$ (a small,
# carefully labelled validation set, used later for influence) and test prompts. Each pair has a
# prompt, a chosen and a rejected response, the annotators' scores (1-10, as UltraFeedback ships), and
# ground-truth columns prefixed `gt_` that scoring and selection never read.

# %%
from tifkit.pipeline import continue_stage, evaluate_stage, prepare, selection_mask, sft_stage, warmup_stage

ctx = prepare(p, nb.seeds[0])
train = ctx.train
print(f"{len(train)} training pairs, {len(ctx.val)} validation pairs, {len(ctx.test_prompts)} test prompts")
train[["prompt", "chosen", "rejected", "score_chosen", "score_rejected", "gt_reward_chosen", "gt_reward_rejected",
       "gt_flipped"]].head(6)

# %% [markdown]
# **The labels are noisy, and not at random.** About 15% of the training pairs are forced against the
# oracle, most of them by a *verbosity-biased annotator* who, on long prompts, prefers the longer
# answer even when it is worse; a few more flip by chance on close pairs (Bradley-Terry labels). The
# cell below counts them by prompt length: this systematic noise is what gives data selection
# something to fix.

# %%
n_letters = train.prompt.str.len() - len("sort :")
noise = (train.assign(prompt_letters=np.where(n_letters >= p.world.bias_min_len, f">= {p.world.bias_min_len} letters",
                                              f"< {p.world.bias_min_len} letters"))
         .groupby("prompt_letters")
         .agg(pairs=("gt_flipped", "size"), mislabelled=("gt_flipped", "mean"),
              chosen_is_longer=("chosen", lambda s: (s.str.len() > train.loc[s.index, "rejected"].str.len()).mean())))
print(f"mislabelled overall: {train.gt_flipped.mean():.1%}")
noise

# %% [markdown]
# ## 3. The pipeline: SFT, warm-up, full data
#
# - **SFT** teaches the task from demonstrations of mixed quality (60% of them end with `!!`, a habit
#   the greedy SFT model inherits). The SFT model is also DPO's reference $\pi_{ref}$.
# - **Warm-up**: one epoch of DPO on all of $D_{tr}$ from $\pi_{ref}$ gives $\theta$. DPO minimises, per
#   pair $d = (x, y_w, y_l)$,
#
# $$ \ell(\theta; d) = -\log\sigma\big(h_\theta(d)\big),\qquad
#    h_\theta(d) = \beta\Big[\log\tfrac{\pi_\theta(y_w|x)}{\pi_{ref}(y_w|x)} - \log\tfrac{\pi_\theta(y_l|x)}{\pi_{ref}(y_l|x)}\Big]. $$
#
#   $h_\theta(d)$ is the *implicit reward margin* (IRM), one of the paper's cheap scores (notebook 02).
# - **Full data**: two more epochs on all pairs from $\theta$. Every selection rule of the paper gets the
#   same two epochs from $\theta$, on its own subset (notebooks 01 and 04).
#
# Each stage is saved under a run folder keyed by a hash of the parameters; a rerun loads it.

# %%
sft_dir = sft_stage(ctx)
warm_dir = warmup_stage(ctx)
full_dir = continue_stage(ctx, "full", selection_mask(ctx, "full"))
print(f"run folder: {ctx.run_dir}")

# %% [markdown]
# ## 4. Evaluation: WinRate against the SFT model
#
# Each model answers every test prompt greedily; so does the SFT model; the oracle judges the pair of
# answers: a win counts 1, a tie 0.5, a loss 0. The mean is the **WinRate** (0.5 = no better than SFT),
# with a 95% bootstrap interval over prompts.

# %%
results = {"warm-up": evaluate_stage(ctx, "warmup", warm_dir), "full": evaluate_stage(ctx, "full", full_dir)}
rows = []
for label, res in results.items():
    t = res.table
    rows.append({"model": label, "WinRate vs SFT": res.winrate.estimate, "lo": res.winrate.lo, "hi": res.winrate.hi,
                 "win/tie/loss": f"{res.counts['win']}/{res.counts['tie']}/{res.counts['loss']}",
                 "oracle reward": t.score_policy.mean(), "SFT reward": t.score_ref.mean(),
                 "ends with '!!'": t.response_policy.str.endswith(p.world.verbose_suffix).mean(),
                 "SFT ends with '!!'": t.response_ref.str.endswith(p.world.verbose_suffix).mean()})
pd.DataFrame(rows).set_index("model")

# %% [markdown]
# A few answers side by side. Look for dropped or swapped letters and the `!!` sign-off:

# %%
results["full"].table[["prompt", "response_ref", "score_ref", "response_policy", "score_policy", "verdict"]].head(8)

# %%
dist = pd.concat([pd.DataFrame({"label": "sft", "reward": results["full"].table.score_ref})]
                 + [pd.DataFrame({"label": k, "reward": r.table.score_policy}) for k, r in results.items()])
fig = plots.reward_distribution(dist, ["sft", "warm-up", "full"],
                                title=f"Oracle reward of greedy answers on {len(ctx.test_prompts)} test prompts "
                                      f"(seed {ctx.seed}, {nb.scale} scale)")
nb.figure(fig, "reward_distribution")

# %% [markdown]
# **How to read it.** Left: the distribution of the oracle reward of each model's answers (1.0 = exactly
# sorted, no sign-off); right: the means. A shift of the DPO curves to the right of the SFT curve is
# what preference training bought, despite the noisy labels.

# %% [markdown]
# ## 5. Conclusion
#
# The check: does full-data DPO win more often than its SFT reference, i.e. does the WinRate's 95%
# interval over this seed's test prompts lie above 0.5? The sentence below is computed from this run.
# One seed judges one trained model, so it gives a direction, not a verdict; the README's table,
# generated from the batch, makes the same check over every seed with an interval that includes the
# seed-to-seed spread of training.

# %%
w = results["full"].winrate
verdict = ("is ahead of" if w.lo > 0.5 else "is behind" if w.hi < 0.5 else "cannot be told apart from")
conclusion = (f"On this one seed, full-data DPO {verdict} the SFT model: WinRate {w.estimate:.3f} [95% {w.lo:.3f}, {w.hi:.3f}] on "
              f"{len(results['full'].table)} test prompts (seed {ctx.seed}); mean oracle reward "
              f"{results['full'].table.score_ref.mean():.3f} -> {results['full'].table.score_policy.mean():.3f}.")
from tifkit.conclusions import ONE_SEED  # this notebook trains one seed at every scale

conclusion += f" The interval resamples the test prompts of this seed only. {ONE_SEED}"
if nb.scale == "ci":
    conclusion += " (CI scale: a toy world of a few dozen pairs; this checks the code, not the claim.)"
display(Markdown(conclusion))
nb.finish(conclusion=conclusion, winrate=w._asdict())
