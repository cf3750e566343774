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
# # 07 · Your data: a report on your own preference pairs
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tifkit/tifkit/blob/main/notebooks/07_your_data.ipynb)
#
# **The idea.** The paper ([arXiv 2510.13212](https://arxiv.org/abs/2510.13212)) says that which
# preference pairs are worth training on depends on the model: a pair's value is its influence (IF) on
# a held-out validation loss, measured at *your* SFT'd model, and the pairs worth keeping sit in a
# middle band of IF (truncated influence, TIF), not at its top. IF is costly, so the paper gives two
# cheap scores that track it: **LossDiff** (how much lower the pair's loss is under a model trained on
# the validation set than under the policy) and **IRM** (the implicit reward margin of the pair
# under the policy); their fusion, **LossDiff-IRM**, keeps the pairs that sit in the middle band of both.
#
# This notebook applies all of that to a file of yours and shows what a practitioner needs to decide
# whether to trust it: which rows could not be used and why, how the three scores are spread over
# your pairs and where the selected band falls, what pairs from the low, middle and high bands look
# like, how much the rules agree with each other, and what scoring your model costs at your data's
# lengths.
#
# **How to run it.** From the command line, `tifkit report --data pairs.jsonl --model my-sft-model`
# scores the pairs (cached, exactly as `tifkit score --data --model` does), runs this notebook with
# those parameters and writes the executed notebook and a static HTML page. Run by hand with
# `data = None` it reports on the built-in preference world instead (at `scale = "ci"`, a toy one),
# so that it always has something small and local to show.
#
# **Claims it puts to work** (numbered as in `docs/METHOD.md`): claim 3 (the middle band of IF beats its
# top), claim 4 (LossDiff and IRM track IF) and claim 5 (their fusion keeps much of what TIF keeps), on
# your pairs and your model rather than on the built-in world; the last section says whether the cheap
# rule agrees with TIF on your data.
#
# **Hardware and time.** On the built-in world or a tiny model, a CPU and seconds to minutes. For your
# own model, scoring is the cost: Section 5 prints the memory estimate at your data's lengths and the
# time of the scoring run, and the README's own-data section shows how to pick a batch size that fits.

# %% tags=["parameters"]
scale = None                  # None: $TIFKIT_NOTEBOOK_SCALE, else "default"; "ci": toy world (used when data is None)
params_file = "tiny.yaml"     # a params file shipped with tifkit, or a path to your own
overrides = []                # extra overrides as strings, written as for --set (e.g. select.keep)
seeds = None                  # None: run.seed
run_root = None               # None: the params file's run.root (runs/), or runs/nb-ci at ci scale
figures_dir = None            # None: <run root>/figures; tifkit report passes the report folder's figures/
data = None                   # your pairs (.jsonl, .json, optionally .gz, or .parquet); None: the built-in world
model = None                  # your SFT'd causal LM (a local folder or a hub id); None: the tiny world model

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

from tifkit import datareport as R
from tifkit import notebooks as N
from tifkit import plots
from tifkit.memory import available_memory, check_memory
from tifkit.models import resolve_device
from tifkit.rules import label
from tifkit.select import overlap_matrix
from tifkit.userfiles import own_params

nb = N.start("07_your_data", scale, params_file, overrides, seeds, run_root, figures_dir, own_data=data is not None)
p = own_params(nb.p, data, model)
rep = R.collect(p, nb.seeds[0])  # prepares the run and scores it (cached: instant after `tifkit report`)
t = rep.table
print(f"pairs from: {rep.source}\nmodel: {rep.model}\nscore table: {rep.score_path}")

# %% [markdown]
# ## 1. Which rows were dropped, and why
#
# **The idea.** Before anything is scored, every row of the file is checked, and a row is dropped for
# the first of these reasons that applies: `missing_field` (no prompt, chosen, rejected or id),
# `non_text` (not a string or a valid chat message list), `empty_response`, `identical_responses`
# (chosen equals rejected: no preference to learn), `duplicate_id`, `duplicate_row` (a repeated row in a
# file without ids), and `too_long` (prompt plus a
# response longer than the model's context, or than `data.max_tokens`). Of the clean pairs, a share
# (`data.val_size`) is held out as the validation set D_val that IF and LossDiff are measured
# against; the rest are scored and selected.
#
# **How to read it.** The first line is the loader's own summary. The table under it lists every
# dropped row by its row number in the file (`row` counts from zero, `line` is the line of a JSONL
# file) and its pair id, so you can open the file there and fix it. Many `too_long` rows mean the
# model's context is short for this data: use a model with a longer context or shorter pairs.

# %%
c = rep.clean
print(c.summary())
if rep.dropped.empty:
    display(Markdown("Every row of the file was usable: nothing was dropped."))
else:
    display(pd.Series({r: n for r, n in c.dropped.items() if n}, name="rows dropped").to_frame())
    display(rep.dropped)
print(f"{rep.n_val} clean pairs held out as D_val; {len(t)} pairs scored and selected.")

# %% [markdown]
# ## 2. How the three scores are spread, and where the selected band falls
#
# **The idea.** Each pair gets three scores at the warm-up model: IF (its exact influence on the
# validation loss), LossDiff and IRM. The paper's finding is that the valuable pairs are neither the
# most nor the least influential: a rule keeps a *band* of ranks, by default a middle one whose width
# is `select.keep` of the pairs. Here each score's own band rule (TIF for IF, the LossDiff band, the
# IRM band) is drawn on its histogram, and the pairs that the fused rule LossDiff-IRM keeps are shown
# as a second histogram.
#
# **How to read it.** The shaded region is the band of raw score values the single-score rule keeps.
# A band in a dense middle region means the rule keeps ordinary pairs and trims both tails; a long
# tail on one side (for instance very negative IF) holds the pairs the rule treats as suspicious. Where
# the coloured histogram (LossDiff-IRM's kept pairs) piles up outside the shaded band, the fused rule
# disagrees with that single score, which Section 4 counts.

# %%
fused = rep.results.get("lossdiff-irm")
names = {"if": "IF (influence on the validation loss)", "lossdiff": "LossDiff", "irm": "IRM (implicit reward margin)"}
cols = [col for col in R.SCORE_COLUMNS if col in t.columns and t[col].notna().any()]
fig, axes = plt.subplots(1, len(cols), figsize=(4.4 * len(cols), 3.6), squeeze=False)
for ax, col in zip(axes[0], cols):
    v = t[col].to_numpy(dtype=float)
    lo, hi, clipped = plots.robust_limits(v)
    bins = np.linspace(lo, hi, 31)
    ax.hist(np.clip(v, lo, hi), bins=bins, color="#b0b0b0", label="every scored pair")
    res = rep.results.get(R.BAND_RULE[col])
    if res is not None and col in res.bands:
        b = res.bands[col]
        ax.axvspan(b["lo_value"], b["hi_value"], color=plots.color(res.rule), alpha=0.25,
                   label=f"{label(res.rule)}: kept band")
    if fused is not None:
        ax.hist(np.clip(v[fused.mask], lo, hi), bins=bins, color=plots.color("lossdiff-irm"), alpha=0.75,
                label=f"{label('lossdiff-irm')}: kept pairs")
    ax.set_title(names[col] + (f" ({clipped} outliers at the edges)" if clipped else ""), fontsize=9)
    ax.set_xlabel(col)
    ax.set_ylabel("pairs")
plots.figure_legend(fig, axes)
fig.suptitle(f"Score distributions of {len(t)} pairs, select.keep={p.select.keep:g}")
fig.tight_layout()
nb.figure(fig, "distributions")

# %% [markdown]
# ## 3. Pairs from the low, middle and high bands
#
# **The idea.** Numbers alone do not say whether a rule is sensible for your data; looking at pairs
# does. The pairs are ranked by IF (by LossDiff when IF was not computed), and a few are shown from
# below the selected band, from inside it, and from above it, with all their scores.
#
# **How to read it.** Pairs in the low band often have a preference label that the model finds
# implausible (a rejected response that looks better than the chosen one, or noise); pairs in the high
# band are often ones the model already gets right, which teach it little. If the middle band's pairs
# look like the ones you want the model to learn from, the rule fits your data; if the low band holds
# good pairs, be careful with trimming it.

# %%
rank_col = "if" if "if" in cols else "lossdiff"
band_res = rep.results.get(R.BAND_RULE[rank_col])
band = band_res.bands.get(rank_col) if band_res is not None else None
band = band or {"lo": 1 / 3, "hi": 2 / 3}  # no band rule on this column: thirds
shown = [c for c in ("if", "lossdiff", "irm", "tif", "rm_margin") if c in t.columns]


def short(x, n=160):
    text = x if isinstance(x, str) else " | ".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in x)
    return text if len(text) <= n else text[:n] + " ..."


for name, rows in R.band_examples(t, rank_col, band, n=3).items():
    pairs = rep.pairs.set_index("pair_id").loc[rows["pair_id"]]
    view = pd.DataFrame({"pair_id": rows["pair_id"].to_numpy(),
                         "prompt": [short(x) for x in pairs["prompt"]],
                         "chosen": [short(x) for x in pairs["chosen"]],
                         "rejected": [short(x) for x in pairs["rejected"]]})
    for col in shown:
        view[col] = rows[col].to_numpy()
    display(Markdown(f"**{name} band of {rank_col}** ({len(view)} pairs)"))
    display(view)

# %% [markdown]
# ## 4. How much the rules agree
#
# **The idea.** Every rule keeps the same number of pairs (`select.keep` of them), so the question is
# which ones. The overlap coefficient of two selections A and B is
#
# $$ \mathrm{overlap}(A, B) = \frac{|A \cap B|}{\min(|A|, |B|)}, $$
#
# one when one selection contains the other, and about `select.keep` for two unrelated selections of
# that size (the `random` rule's row shows what chance alone gives on this data).
#
# **How to read it.** A cell well above the random row means the two rules keep largely the same
# pairs: on such data the cheap rule (LossDiff-IRM) can stand in for the costly one (TIF). A cell near
# the random row means they select different pairs and the choice of rule matters.

# %%
rules = list(rep.results)
ov = overlap_matrix(rep.results)
fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(rules), 0.8 + 0.65 * len(rules)))
im = ax.imshow(ov.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis")
ax.set_xticks(range(len(rules)), [label(r) for r in rules], rotation=40, ha="right", fontsize=8)
ax.set_yticks(range(len(rules)), [label(r) for r in rules], fontsize=8)
ax.grid(False)
for i in range(len(rules)):
    for j in range(len(rules)):
        val = ov.iat[i, j]
        ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=7, color="white" if val < 0.6 else "black")
fig.colorbar(im, ax=ax, label="overlap coefficient")
ax.set_title(f"Agreement between selection rules ({len(t)} pairs, keep {p.select.keep:g})")
nb.figure(fig, "overlap")
display(ov.round(3))

# %% [markdown]
# ## 5. What scoring your model costs at your data's lengths
#
# **The idea.** IF needs a gradient per pair through the whole model, so its memory grows with the
# model and with the longest pair in a batch (every row is padded to it). `tifkit.memory` estimates one
# scoring process's peak from the model's configuration alone: the weights of the three models held at
# once (policy, reference, validation model), the gradients, one batch's activations and its logits.
# The time is the wall time of the scoring run that produced this table (the warm-up and validation
# stages included), when this kit measured it.
#
# **How to read it.** Compare the estimate's total with the memory free on the machine that will
# score. If it does not fit, the last line names a `score.batch_size` that does (or the other fixes);
# the estimate errs high, since it pads every row to the longest. The lengths table shows whether a
# few very long pairs drive the cost: if the longest is far above the typical length, dropping those
# pairs (`data.max_tokens`) makes scoring cheaper.

# %%
lengths = pd.DataFrame({"prompt": t["prompt_tokens"], "chosen": t["chosen_tokens"], "rejected": t["rejected_tokens"]})
lengths["prompt + longer response"] = lengths["prompt"] + lengths[["chosen", "rejected"]].max(axis=1)
display(lengths.describe(percentiles=[0.5, 0.95]).loc[["count", "mean", "50%", "95%", "max"]].round(1))
rows = []
for what, L in (("median pair", int(lengths["prompt + longer response"].median())),
                ("95th percentile", int(lengths["prompt + longer response"].quantile(0.95))),
                ("longest pair", rep.seq_len)):
    est = R.scoring_memory(p, max(L, 1), rep.model_dir)
    rows.append({"length": what, "tokens": L, "batch pairs": rep.batch_size,
                 "total GiB": est.total / 2**30, "weights GiB": est.weights / 2**30,
                 "activations GiB": est.activations / 2**30, "logits GiB": est.logits / 2**30})
display(pd.DataFrame(rows).round(4))
device = resolve_device(p.model.device)
free = available_memory(device)
print(f"estimate at the longest pair: {rep.memory.describe()}")
try:
    check_memory(rep.memory, device, None, batch_pairs=rep.batch_size, say=None)
    print(f"fits in the {free / 2**30:.1f} GiB free on {device} at score.batch_size={rep.batch_size}")
except Exception as e:  # noqa: BLE001 - the estimate's own advice, printed
    print(f"does not fit here: {e}")
if rep.score_seconds is not None:
    print(f"scoring run: {rep.score_seconds:.1f} s for {len(t)} pairs ({rep.score_seconds / max(len(t), 1):.3f} s per "
          "pair, stages included), on this machine")
else:
    print("scoring run: the table was computed earlier by another command, which did not record its time")

# %% [markdown]
# ## 6. Conclusion, and what to do next
#
# The cell below says, from the numbers above, how much of the file was usable and whether the cheap
# fused rule picked the pairs that exact influence (TIF) picks on your data, compared with chance.
#
# - `tifkit select --data FILE --model PATH --rule lossdiff-irm -o kept.jsonl` writes the pairs the fused
#   rule keeps (with the scores it read) as a file TRL's DPOTrainer loads; `--keep` sets the band's width.
# - If Section 1 dropped many rows, fix them (the table names each row) and rerun: scoring is cached
#   per set of pairs.
# - If the rules disagree, train on two of them (`tifkit evaluate --rule ...`) and compare against your
#   own judge before trusting either.

# %%
n_dropped = sum(c.dropped.values())
lines = [f"{c.n_in} rows read, {n_dropped} dropped" + (f" ({', '.join(f'{n} {r}' for r, n in c.dropped.items() if n)})"
         if n_dropped else "") + f"; {len(t)} pairs scored, {rep.n_val} held out as D_val."]
if {"tif", "lossdiff-irm", "random"} <= set(ov.index):
    o_fused, o_rand = float(ov.loc["lossdiff-irm", "tif"]), float(ov.loc["random", "tif"])
    verdict = ("the cheap fused rule picks largely the pairs exact influence picks here, so it can stand in for TIF "
               "on this data" if o_fused >= o_rand + 0.1 else
               "the cheap fused rule agrees with TIF little better than chance here, so compute IF (TIF) on this "
               "data rather than trusting the proxy")
    lines.append(f"Overlap of LossDiff-IRM with TIF: {o_fused:.2f}, random with TIF: {o_rand:.2f}: {verdict}.")
if nb.scale == "ci":
    lines.append("CI scale: a toy world and a tiny model; these numbers check the code only, they are not results.")
conclusion = " ".join(lines)
display(Markdown("\n".join(f"- {x}" for x in lines)))
kept = {r: int(res.n_kept) for r, res in rep.results.items()}
nb.finish(conclusion=conclusion, source=rep.source, model=rep.model, n_in=c.n_in, n_scored=len(t), dropped=c.dropped,
          dropped_rows={r: v for r, v in c.rows.items()}, kept=kept, score_seconds=rep.score_seconds,
          memory_gib=rep.memory.total / 2**30, seq_len=rep.seq_len)
