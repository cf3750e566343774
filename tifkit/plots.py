"""One figure style for every notebook and the batch run."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() in ("", "agg") else None
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PALETTE = {"sft": "#8c8c8c", "full": "#4c72b0", "oracle": "#55a868", "random": "#c44e52",
           "lossdiff-irm": "#8172b2", "tif": "#ccb974", "top-if": "#64b5cd", "lossdiff": "#dd8452",
           "irm": "#937860", "rm-margin": "#da8bc3", "annotation-gap": "#8c613c"}


def style() -> None:
    plt.rcParams.update({"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "font.size": 10})


def color(name: str) -> str:
    return PALETTE.get(name, "#333333")


def save(fig, path: str | Path) -> Path:
    """Save a figure as PNG (written to a temporary name, then renamed)."""
    from tifkit.io import atomic_path

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
        ax.axvline(float(s.loc[s.rule == "full", "winrate_vs_sft"].iloc[0]), color=color("full"), ls="--", lw=1)
    ax.axvline(0.5, color="black", lw=0.8)
    lo = max(0.0, float(s.winrate_lo.min()) - 0.05)
    ax.set_xlim(lo, min(1.0, float(s.winrate_hi.max()) + 0.05))
    ax.set_xlabel("WinRate against SFT (oracle judge), 95% bootstrap interval")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
