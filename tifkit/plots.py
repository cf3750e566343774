"""One figure style for every notebook and the batch run."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() in ("", "agg") else None
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tifkit.io import atomic_path  # noqa: E402
from tifkit.report import PAPER  # noqa: E402
from tifkit.rules import DEFAULT_COLOUR, find_rule  # noqa: E402

# Colours of the names figures draw that are not rules; every rule's colour is its registry entry's
# (tifkit.rules), looked up when drawn, so a rule registered later has its colour too.
OTHER_COLOURS = {"sft": "#8c8c8c"}


def style() -> None:
    plt.rcParams.update({"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "font.size": 10})


def color(name: str) -> str:
    """The colour of a rule (from the registry; aliases work) or of another name figures draw (sft)."""
    spec = find_rule(name)
    return spec.colour if spec is not None else OTHER_COLOURS.get(name, DEFAULT_COLOUR)


def legend_outside(ax, **kw):
    """The axes' legend to the right of the plot area, where it cannot cover a bar (saved figures are
    cropped to their content, legend included)."""
    return ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kw)


def figure_legend(fig, axes, **kw):
    """One legend for several panels: every label of every panel once, to the right of the figure."""
    handles = {}
    for a in np.ravel(axes):
        for h, lab in zip(*a.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    return fig.legend(list(handles.values()), list(handles), frameon=False, fontsize=8, loc="upper left",
                      bbox_to_anchor=(1.0, 0.95), **kw)


def robust_limits(values, q: float = 0.01, pad: float = 0.08) -> tuple[float, float, int]:
    """Axis limits that show the central 1 - 2q of `values` (padded by `pad` of the span) so that a
    few outliers cannot stretch a panel; also the number of values outside (clipped from view)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return 0.0, 1.0, 0
    lo, hi = np.quantile(v, [q, 1 - q])
    span = (hi - lo) or max(abs(hi), 1.0)
    lo, hi = lo - pad * span, hi + pad * span
    return float(lo), float(hi), int(((v < lo) | (v > hi)).sum())


def save(fig, path: str | Path) -> Path:
    """Save a figure as PNG (written to a temporary name, then renamed)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", bbox_inches="tight")
    plt.close(fig)
    return path


def reward_distribution(df: pd.DataFrame, labels: list[str], title: str = ""):
    """Histogram-style step plot of the oracle reward of each label's greedy responses.

    `df` has columns `label` and `reward` (one row per test prompt and seed).
    """
    style()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [2.2, 1]})
    bins = np.linspace(0, 1, 21)
    for lab in labels:
        r = df.loc[df.label == lab, "reward"].to_numpy()
        ax.hist(r, bins=bins, histtype="step", lw=2, color=color(lab), label=f"{lab} (mean {r.mean():.3f})",
                density=True)
    ax.set_xlabel("oracle reward r*(x, y) of the greedy response")
    ax.set_ylabel("density")
    ax.legend(loc="upper left", frameon=False)
    means = [df.loc[df.label == lab, "reward"].mean() for lab in labels]
    ax2.bar(labels, means, color=[color(lab) for lab in labels])
    for i, m in enumerate(means):
        ax2.text(i, m + 0.01, f"{m:.3f}", ha="center", va="bottom")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("mean oracle reward")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def winrate_bars(summary: pd.DataFrame, title: str = ""):
    """WinRate against SFT per rule with its bootstrap interval (columns rule, winrate_vs_sft,
    winrate_lo, winrate_hi), sorted, with full data as a reference line."""
    style()
    s = summary.sort_values("winrate_vs_sft")
    fig, ax = plt.subplots(figsize=(7, 0.38 * len(s) + 1.2))
    y = np.arange(len(s))
    err = np.vstack([s.winrate_vs_sft - s.winrate_lo, s.winrate_hi - s.winrate_vs_sft])
    ax.barh(y, s.winrate_vs_sft, xerr=err, color=[color(r) for r in s.rule], capsize=3)
    ax.set_yticks(y, s.rule)
    if "full" in set(s.rule):
        ax.axvline(float(s.loc[s.rule == "full", "winrate_vs_sft"].iloc[0]), color=color("full"), ls="--", lw=1,
                   label="full data")
    ax.axvline(0.5, color="black", lw=0.8, label="0.5: no better than SFT")
    ax.set_xlim(0, 1)  # bars encode their length: they start at 0
    ax.set_xlabel("WinRate against SFT (oracle judge), 95% bootstrap interval")
    legend_outside(ax)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# Figures of the notebooks

GROUP_COLORS = {"small": "#c44e52", "medium": "#55a868", "large": "#64b5cd"}  # large: top-IF's colour, not full data's


def plot_group_curves(curves: pd.DataFrame, title: str = ""):
    """Validation loss and margin against training steps for each IF group (mean over seeds, with
    each seed faint when there are several); the warm-up model (step 0) as a labelled reference line."""
    style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    seeds = sorted(curves.seed.unique()) if "seed" in curves else [None]
    for ax, col, label in zip(axes, ("val_loss", "val_margin"), ("validation loss", "validation reward margin")):
        for g in curves.group.unique():
            c = curves[curves.group == g]
            color = GROUP_COLORS.get(g)
            if len(seeds) > 1:
                for s in seeds:
                    cs = c[c.seed == s].sort_values("step")
                    ax.plot(cs.step, cs[col], color=color, alpha=0.25, lw=1)
            m = c.groupby("step")[col].mean()
            ax.plot(m.index, m.values, color=color, lw=2, marker="o", ms=3, label=f"{g} IF")
        start = curves.loc[curves.step == 0, col]
        if len(start):
            ax.axhline(float(start.mean()), color="#333333", ls=":", lw=1, label="warm-up model (step 0)")
        ax.set_xlabel("optimizer step (continuation from the warm-up model)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} while training on each IF group")
        ax.legend(frameon=False, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_winrates(summary: pd.DataFrame, title: str = "", name_col: str = "rule", ax=None):
    """Horizontal WinRate-vs-SFT bars with 95% intervals, one per rule (or group)."""
    style()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 0.45 * len(summary) + 1.2))
    s = summary.reset_index(drop=True)
    est = s["winrate_vs_sft"] if "winrate_vs_sft" in s else s["winrate"]
    y = np.arange(len(s))[::-1]
    ax.barh(y, est, xerr=[est - s.winrate_lo, s.winrate_hi - est], capsize=3,
            color=[GROUP_COLORS.get(n, color(n)) for n in s[name_col]])
    ax.set_yticks(y, s[name_col])
    ax.axvline(0.5, color="#333333", ls="--", lw=1, label="0.5: no better than SFT")
    if "full" in set(s[name_col]):
        ax.axvline(float(est[s[name_col] == "full"].iloc[0]), color=color("full"), ls=":", lw=1.5,
                   label="full data")
    ax.set_xlim(0, 1)
    ax.set_xlabel("WinRate vs SFT (oracle judge), 95% interval")
    legend_outside(ax)
    if title:
        ax.set_title(title)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


def plot_benchmark(summaries: dict[str, pd.DataFrame], title: str = ""):
    """One row of panels per variant (a family, an objective): left, WinRate against SFT with its
    95% interval (0.5 and the full-data WinRate as labelled reference lines); right, each rule's
    paired difference against full data in WinRate points (columns diff_vs_full, _lo, _hi of
    tifkit.batch.summarize) on an axis fitted to the differences, zero labelled."""
    style()
    n = len(summaries)
    rows = max(len(s) for s in summaries.values())
    fig, axes = plt.subplots(n, 2, figsize=(12, n * (0.36 * rows + 1.3)), squeeze=False)
    for (ax, ax2), (name, s) in zip(axes, summaries.items()):
        s = s.sort_values("winrate_vs_sft").reset_index(drop=True)
        y = np.arange(len(s))
        est = s.winrate_vs_sft.to_numpy()
        ax.barh(y, est, xerr=[est - s.winrate_lo, s.winrate_hi - est], capsize=3, color=[color(r) for r in s.rule])
        ax.axvline(0.5, color="#333333", ls="--", lw=1, label="0.5: no better than SFT")
        if "full" in set(s.rule):
            ax.axvline(float(s.loc[s.rule == "full", "winrate_vs_sft"].iloc[0]), color=color("full"), ls=":",
                       lw=1.5, label="full data (left: its WinRate; right: 0 points)")
        ax.set_yticks(y, s.rule)
        ax.set_xlim(0, 1)
        ax.set_xlabel("WinRate against SFT (oracle judge; 1 win, 0.5 tie), 95% interval")
        ax.set_title(f"{name}: WinRate against SFT")
        d = s[s.rule != "full"] if "diff_vs_full" in s else s.iloc[:0]
        if len(d):
            de = 100 * d.diff_vs_full.to_numpy()
            yd = y[s.rule != "full"]
            ax2.barh(yd, de, xerr=[de - 100 * d.diff_vs_full_lo, 100 * d.diff_vs_full_hi - de], capsize=3,
                     color=[color(r) for r in d.rule])
            ax2.axvline(0, color=color("full"), ls=":", lw=1.5, label="full data (left: its WinRate; right: 0 points)")
            span = max(np.nanmax(np.abs(100 * d[["diff_vs_full_lo", "diff_vs_full_hi"]].to_numpy())), 1.0)
            ax2.set_xlim(-1.1 * span, 1.1 * span)
        ax2.set_yticks(y, s.rule)
        ax2.set_xlabel("WinRate minus full data's (points, paired on the same prompts), 95% interval")
        ax2.set_title(f"{name}: difference against full data")
    handles = {}
    for a in axes[0]:  # one legend for the figure: the reference lines mean the same in every row
        for h, lab in zip(*a.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles), frameon=False, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    return fig


OBJECTIVE_MARKERS = {"dpo": ("o", -0.17), "slic": ("s", 0.17)}  # marker and row offset per objective


def _seed_counts(sub: pd.DataFrame) -> str:
    """"25 seeds", or "DPO 25, SLiC 3 seeds" when a family's objectives ran different seeds."""
    counts = {obj: "/".join(str(n) for n in sorted({int(x) for x in sub[sub.objective == obj].n_seeds}))
              for obj in OBJECTIVE_MARKERS if (sub.objective == obj).any()}
    if len(set(counts.values())) <= 1:
        return f"{next(iter(counts.values()), '?')} seeds"
    return ", ".join(f"{'SLiC' if obj == 'slic' else obj.upper()} {c}" for obj, c in counts.items()) + " seeds"


def plot_family_grid(grid: pd.DataFrame, title: str = ""):
    """The family grid (tifkit.results.grid_frame), one panel per family: each rule's paired difference
    against full data in WinRate points with its 95% interval over seeds and prompts, DPO (circles) and
    SLiC (squares) side by side, zero (= full data) marked; the panel title says how many seeds (per
    objective where they differ)."""
    style()
    g = grid[grid.rule != "full"]
    fams = list(dict.fromkeys(g.family))
    rules = list(dict.fromkeys(g.rule))[::-1]
    fig, axes = plt.subplots(1, max(len(fams), 1), figsize=(3.6 * max(len(fams), 1) + 1.2, 0.42 * len(rules) + 1.6),
                             sharey=True, squeeze=False)
    lo, hi, _ = robust_limits(100 * g[["diff_vs_full_lo", "diff_vs_full_hi"]].to_numpy().ravel(), q=0.0)
    for ax, fam in zip(axes[0], fams):
        sub = g[g.family == fam]
        for obj, (marker, off) in OBJECTIVE_MARKERS.items():
            part = sub[sub.objective == obj]
            for r in part.itertuples():
                y = rules.index(r.rule) + off
                ax.errorbar(100 * r.diff_vs_full, y, xerr=[[100 * (r.diff_vs_full - r.diff_vs_full_lo)],
                                                           [100 * (r.diff_vs_full_hi - r.diff_vs_full)]],
                            fmt=marker, color=color(r.rule), capsize=2, ms=5, mfc="white" if obj == "slic" else None,
                            label=f"{obj.upper() if obj == 'dpo' else 'SLiC'}")
        ax.axvline(0, color=color("full"), ls=":", lw=1.5)
        ax.set_title(f"{fam} ({_seed_counts(sub)})")
        ax.set_xlim(min(lo, -1.0), max(hi, 1.0))
        ax.set_xlabel("minus full data (WinRate points)")
    axes[0][0].set_yticks(range(len(rules)), rules)
    handles = [plt.Line2D([], [], marker=m, ls="", color="#555555", mfc="white" if o == "slic" else "#555555",
                          label="SLiC" if o == "slic" else "DPO") for o, (m, _) in OBJECTIVE_MARKERS.items()]
    handles.append(plt.Line2D([], [], color=color("full"), ls=":", label="full data (0 points)"))
    fig.legend(handles=handles, frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 0.95))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_transfer(summary: pd.DataFrame, title: str = ""):
    """Transfer across families (tifkit.experiments.transfer_summary): one panel per target family,
    WinRate against SFT with 95% intervals of its full data, its own selection and each other
    family's selection; 0.5 and the target's full-data WinRate as labelled reference lines."""
    style()
    targets = list(dict.fromkeys(summary.target))
    n_rows = max(int((summary.target == t).sum()) for t in targets)
    fig, axes = plt.subplots(1, len(targets), figsize=(4.8 * len(targets), 0.5 * n_rows + 1.8), squeeze=False)
    palette = {"full": color("full"), "own": color("lossdiff-irm")}
    for ax, t in zip(axes[0], targets):
        s = summary[summary.target == t].reset_index(drop=True)
        y = np.arange(len(s))[::-1]
        est = s.winrate.to_numpy()
        names = [f"{src} data" if src == "full" else f"own ({t}) selection" if src == "own" else f"{src}'s selection"
                 for src in s.source]
        ax.barh(y, est, xerr=[est - s.winrate_lo, s.winrate_hi - est], capsize=3,
                color=[palette.get(src, "#ccb974") for src in s.source])
        ax.set_yticks(y, names)
        ax.axvline(0.5, color="#333333", ls="--", lw=1, label="0.5: no better than SFT")
        if "full" in set(s.source):
            ax.axvline(float(s.loc[s.source == "full", "winrate"].iloc[0]), color=color("full"), ls=":", lw=1.5,
                       label=f"{t} on full data")
        ax.set_xlim(0, 1)
        ax.set_xlabel("WinRate against SFT (oracle judge), 95% interval")
        ax.set_title(f"{t} trained on ...")
        ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_overlap_sweep(sweep: pd.DataFrame, title: str = ""):
    """Overlap with TIF against the keep ratio for each rule (mean over seeds, std as error bars);
    the paper's ranges shaded only at the keep ratio they were reported at (PAPER["keep"]), chance
    (= keep) dashed, all in the legend."""
    style()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    keeps = np.sort(sweep.keep.unique())
    step = float(np.min(np.diff(keeps))) if len(keeps) > 1 else 0.1
    k, w = PAPER["keep"], 0.3 * step
    lo, hi = PAPER["overlap_lossdiff_irm"]
    ax.fill_between([k - w, k + w], lo, hi, color=color("lossdiff-irm"), alpha=0.2, lw=0,
                    label=f"paper: LossDiff-IRM (at keep {k:g})")
    lo, hi = PAPER["overlap_single"]
    ax.fill_between([k - w, k + w], lo, hi, color="#999999", alpha=0.25, lw=0,
                    label=f"paper: single proxies (at keep {k:g})")
    for rule in sweep.rule.unique():
        s = sweep[sweep.rule == rule].groupby("keep").overlap.agg(["mean", "std"]).reset_index()
        ax.errorbar(s.keep, s["mean"], yerr=s["std"].fillna(0), marker="o", ms=4, capsize=2, color=color(rule),
                    lw=2.5 if rule == "lossdiff-irm" else 1.5, label=rule)
    ch = sweep.groupby("keep").chance.mean()
    ax.plot(ch.index, ch.values, color="#333333", ls="--", lw=1, label="chance (= keep)")
    ax.set_xlabel("keep ratio")
    ax.set_ylabel("overlap coefficient with the TIF selection")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "Overlap of each rule's selection with TIF's, by keep ratio")
    legend_outside(ax)
    fig.tight_layout()
    return fig


def plot_venn3(counts: dict, title: str = ""):
    """A three-set Venn diagram (circles of equal size, region counts written in)."""
    from matplotlib.patches import Circle

    style()
    fig, ax = plt.subplots(figsize=(5, 4.6))
    centers = [(-0.55, 0.35), (0.55, 0.35), (0.0, -0.55)]
    names = counts["rules"]
    for (x, y), name in zip(centers, names):
        ax.add_patch(Circle((x, y), 1.0, alpha=0.25, color=color(name)))
        ax.add_patch(Circle((x, y), 1.0, fill=False, color=color(name), lw=1.5))
    pos = {"100": (-1.05, 0.7), "010": (1.05, 0.7), "001": (0.0, -1.2), "110": (0.0, 0.85),
           "101": (-0.75, -0.4), "011": (0.75, -0.4), "111": (0.0, 0.05)}
    for k, (x, y) in pos.items():
        ax.text(x, y, str(counts[k]), ha="center", va="center", fontsize=11)
    for (x, y), name, dy in zip(centers, names, (1.15, 1.15, -1.15)):
        ax.text(x, y + dy, name, ha="center", va="center", fontsize=11, weight="bold")
    ax.set_xlim(-1.9, 1.9)
    ax.set_ylim(-1.9, 1.75)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or f"selections at keep; {counts['n']} pairs")
    fig.tight_layout()
    return fig
