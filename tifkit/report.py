"""Metrics computed from score tables and per-prompt verdicts (pure numpy/pandas/scipy; trains nothing).

- scores (claims 4, 5): `auroc`, `score_columns`, `score_report`, `overlap_sweep`, `venn_counts`,
  `aggregate`, `selection` (a rule's mask at a keep ratio);
- IF groups (claim 2): `if_groups`, `group_summary`;
- WinRates (claims 3, 6): `pooled_winrates`, `benchmark_table`;
- model dependence (claim 1): `model_dependence` -> `ModelDependence`;
- `PAPER` and `PAPER_WINRATES`: the paper's numbers to put beside ours.

Ground-truth columns (``gt_*``) are read here for *evaluation* only (AUROC of finding the mislabelled
pairs, flip rates of groups); selection never sees them. Sentences that state whether a claim held
are in tifkit.conclusions; figures in tifkit.plots; the multi-stage runs in tifkit.experiments.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from tifkit import TifkitError
from tifkit.rules import BASELINES, find_rule, overlap_rules
from tifkit.select import SelectParams, correlations, overlap_coefficient, select
from tifkit.stats import bootstrap_interval

# The paper's numbers (docs/METHOD.md, "The paper's results")
PAPER = {
    "corr_lossdiff_if": 0.77,  # correlation of LossDiff with IF (the paper does not say Pearson or Spearman)
    "corr_irm_if": 0.67,
    "overlap_lossdiff_irm": (0.73, 0.78),  # overlap coefficient with the TIF selection
    "overlap_single": (0.60, 0.70),  # LossDiff alone, IRM alone
    "cost_speedup": 120.0,  # ~5 minutes against ~10 hours on a 1B model
    "keep": 0.64,
}


# Llama-3.1-8B, DPO, 64% of UltraFeedback, WinRate % against the SFT model.
PAPER_WINRATES = pd.DataFrame(
    {"UltraFeedback": [77.61, 80.57, 82.68, 83.97], "AlpacaEval": [78.41, 81.09, 83.76, 87.08],
     "Vicuna": [73.75, 80.31, 76.88, 86.88], "Arena-Hard": [81.39, 84.30, 86.19, 88.40]},
    index=pd.Index(["full", "annotation-gap", "rm-margin", "lossdiff-irm"], name="rule"))


def auroc(scores, positives, higher_is_positive: bool = False) -> float:
    """Area under the ROC curve of `scores` for finding `positives` (Mann-Whitney, ties count 1/2).

    With ``higher_is_positive=False`` (the default) a *low* score flags a positive, as a low IF,
    LossDiff or IRM flags a mislabelled pair. NaN when there are no positives or no negatives.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positives, dtype=bool)
    if s.shape != y.shape:
        raise TifkitError(f"auroc got {len(s)} scores and {len(y)} labels; pass one label per score.")
    if np.isnan(s).any():
        raise TifkitError("auroc got NaN scores; drop or rescore those pairs first.")
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(s if higher_is_positive else -s)  # average ranks for ties
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def score_columns(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """The per-pair scores a table holds, low = suspicious: if, lossdiff, irm, rm_margin and
    annotation_gap (score_chosen - score_rejected), each when present."""
    out = {}
    for col in ("if", "lossdiff", "irm", "rm_margin"):
        if col in table.columns:
            out[col] = table[col].to_numpy(dtype=np.float64)
    if "score_chosen" in table.columns and "score_rejected" in table.columns:
        out["annotation_gap"] = (table["score_chosen"].to_numpy(dtype=np.float64)
                                 - table["score_rejected"].to_numpy(dtype=np.float64))
    return out


def _rule_available(table: pd.DataFrame, rule: str) -> bool:
    """The table has every score column the rule reads (tifkit.rules: its `needs`)."""
    spec = find_rule(rule)
    return spec is None or all(c in table.columns for c in spec.needs)  # unknown: select() names it


def selection(table: pd.DataFrame, rule: str, keep: float, select_params=None) -> np.ndarray:
    """The mask `tifkit.select.select` keeps for `rule` at `keep` (other fields from `select_params`)."""
    base = select_params or SelectParams()
    return select(table, dataclasses.replace(base, rule=rule, keep=keep)).mask


def _paper_text(lo, hi) -> str:
    if lo is None or (isinstance(lo, float) and np.isnan(lo)):
        return ""
    return f"{lo:.2f}" if lo == hi else f"{lo:.2f}-{hi:.2f}"


def score_report(table: pd.DataFrame, keep: float = 0.64, select_params=None, rules=None,
                 label_column: str = "gt_flipped") -> pd.DataFrame:
    """One row per statistic, with the paper's number beside ours where it gives one.

    Columns: section, name, statistic, value, paper (text), paper_lo, paper_hi.

    - ``auroc``: AUROC of each score (low score = mislabelled) for the pairs of `label_column`
      (skipped without it);
    - ``correlation``: Pearson and Spearman correlation of LossDiff and of IRM with IF;
    - ``overlap``: overlap coefficient |A n B| / min(|A|, |B|) of each rule's selection with the TIF
      selection, both at `keep`, for `rules` (default: the registry's overlap rules, tifkit.rules;
      rules whose columns the table lacks are skipped).
    """
    rules = overlap_rules() if rules is None else rules
    rows = []

    def add(section, name, statistic, value, lo=np.nan, hi=np.nan):
        rows.append({"section": section, "name": name, "statistic": statistic, "value": float(value),
                     "paper": _paper_text(lo, hi), "paper_lo": lo, "paper_hi": hi})

    scores = score_columns(table)
    if label_column in table.columns:
        y = table[label_column].to_numpy(dtype=bool)
        for name, s in scores.items():
            add("auroc", name, f"AUROC ({label_column}, low score)", auroc(s, y))
    if "if" in scores:
        for name, key in (("lossdiff", "corr_lossdiff_if"), ("irm", "corr_irm_if")):
            if name in scores:
                c = correlations(scores[name], scores["if"])
                add("correlation", name, "pearson with IF", c["pearson"], PAPER[key], PAPER[key])
                add("correlation", name, "spearman with IF", c["spearman"], PAPER[key], PAPER[key])
        tif = selection(table, "tif", keep, select_params)
        for rule in rules:
            if not _rule_available(table, rule):
                continue
            lo, hi = (PAPER["overlap_lossdiff_irm"] if rule == "lossdiff-irm" else
                      PAPER["overlap_single"] if rule in ("lossdiff", "irm") else (np.nan, np.nan))
            add("overlap", rule, f"overlap with TIF at keep {keep:g}",
                overlap_coefficient(selection(table, rule, keep, select_params), tif), lo, hi)
    return pd.DataFrame(rows, columns=["section", "name", "statistic", "value", "paper", "paper_lo", "paper_hi"])


def report_value(report: pd.DataFrame, section: str, name: str, statistic_prefix: str = "") -> float:
    """The value of one statistic of a `score_report` table (NaN when absent)."""
    r = report[(report.section == section) & (report.name == name) & report.statistic.str.startswith(statistic_prefix)]
    return float(r.value.iloc[0]) if len(r) else float("nan")


def aggregate(frames: dict | list, by: list[str], value: str = "value") -> pd.DataFrame:
    """Mean, std and count of `value` over several runs (e.g. one `score_report` per seed),
    grouped by `by`; other columns of the first frame are kept (first value)."""
    if isinstance(frames, dict):
        frames = [f.assign(seed=k) for k, f in frames.items()]
    df = pd.concat(frames, ignore_index=True)
    g = df.groupby(by, sort=False, dropna=False)
    out = g[value].agg(["mean", "std", "count"]).rename(columns={"mean": value, "std": f"{value}_std",
                                                                  "count": "n_runs"})
    rest = [c for c in df.columns if c not in by + [value, "seed"]]
    if rest:
        out = out.join(g[rest].first())
    return out.reset_index()


def overlap_sweep(table: pd.DataFrame, keeps=(0.5, 0.56, 0.64, 0.72, 0.8), rules=("lossdiff-irm", "lossdiff", "irm",
                  "top-if", "random"), select_params=None) -> pd.DataFrame:
    """Overlap with the TIF selection of each rule at each keep ratio: columns keep, rule, overlap,
    n_kept, chance (the overlap a random subset of the same size would have on average: keep)."""
    rows = []
    for keep in keeps:
        tif = selection(table, "tif", keep, select_params)
        for rule in rules:
            if not _rule_available(table, rule):
                continue
            m = selection(table, rule, keep, select_params)
            rows.append({"keep": float(keep), "rule": rule, "overlap": overlap_coefficient(m, tif),
                         "n_kept": int(m.sum()), "chance": float(tif.mean())})
    return pd.DataFrame(rows)


def venn_counts(table: pd.DataFrame, keep: float = 0.64, rules=("tif", "lossdiff", "irm"),
                select_params=None) -> dict:
    """Sizes of the 7 regions of three selections' Venn diagram, keyed by membership strings such
    as "110" (in the first and second, not the third), plus "rules" and "n"."""
    masks = [selection(table, r, keep, select_params) for r in rules]
    out = {"rules": list(rules), "n": len(table)}
    for bits in ("100", "010", "001", "110", "101", "011", "111"):
        m = np.ones(len(table), dtype=bool)
        for b, mask in zip(bits, masks):
            m &= mask if b == "1" else ~mask
        out[bits] = int(m.sum())
    return out


GROUP_NAMES = {3: ("small", "medium", "large")}


def if_groups(table: pd.DataFrame, n_groups: int = 3, column: str = "if") -> dict[str, np.ndarray]:
    """Split the pairs into `n_groups` equal-size groups by the rank of `column` (ties by row order):
    {"small": mask, "medium": mask, "large": mask} for three, {"q1": ..., "qN": ...} otherwise,
    smallest values first. Sizes differ by at most one."""
    if column not in table.columns:
        raise TifkitError(f"IF groups need column '{column}' in the score table; score with influence enabled.")
    if not 1 <= n_groups <= len(table):
        raise TifkitError(f"n_groups={n_groups} must be between 1 and the number of pairs ({len(table)}).")
    values = table[column].to_numpy(dtype=np.float64)
    order = np.lexsort((np.arange(len(values)), values))
    names = GROUP_NAMES.get(n_groups, tuple(f"q{i + 1}" for i in range(n_groups)))
    out = {}
    for name, idx in zip(names, np.array_split(order, n_groups)):
        m = np.zeros(len(values), dtype=bool)
        m[idx] = True
        out[name] = m
    return out


def group_summary(table: pd.DataFrame, groups: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per group: size, IF range and mean, mean LossDiff/IRM, and the share of mislabelled pairs
    (world only)."""
    rows = []
    for name, m in groups.items():
        t = table[np.asarray(m, dtype=bool)]
        row = {"group": name, "n": len(t), "if_min": t["if"].min(), "if_max": t["if"].max(), "if_mean": t["if"].mean()}
        for col in ("lossdiff", "irm"):
            if col in t:
                row[f"{col}_mean"] = t[col].mean()
        if "gt_flipped" in t:
            row["flipped_share"] = t["gt_flipped"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def pooled_winrates(wins: pd.DataFrame, n_bootstrap: int = 2000) -> pd.DataFrame:
    """Pool `evaluate_models` rows of several seeds by name: WinRate with a bootstrap interval
    (prompts resampled within each seed)."""
    rows = []
    for name, g in wins.groupby("name", sort=False):
        v = np.concatenate(g.verdicts.to_list())
        strata = np.concatenate([np.full(len(x), s) for x, s in zip(g.verdicts, g.seed)])
        wr = bootstrap_interval(v, n_bootstrap, 0, strata=strata)
        rows.append({"name": name, "n_seeds": len(g), "winrate": wr.estimate, "winrate_lo": wr.lo,
                     "winrate_hi": wr.hi, "reward": g.reward.mean(), "reward_sft": g.reward_sft.mean()})
    return pd.DataFrame(rows)


def _fmt_interval(est, lo, hi, pct: bool = True) -> str:
    if not np.isfinite(est):
        return ""
    f = 100.0 if pct else 1.0
    return f"{f * est:.1f} [{f * lo:.1f}, {f * hi:.1f}]"


def benchmark_table(summaries: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per rule; per family "WinRate % [95% interval]" and the paired differences "vs full"
    and "vs random" (points, from tifkit.batch.summarize), then the paper's UltraFeedback WinRate
    (Llama-3.1-8B, DPO, 64%)."""
    rules = []
    for s in summaries.values():
        rules += [r for r in s.rule if r not in rules]
    out = pd.DataFrame(index=pd.Index(rules, name="rule"))
    for fam, s in summaries.items():
        s = s.set_index("rule")
        out[f"{fam} WinRate %"] = [_fmt_interval(*s.loc[r, ["winrate_vs_sft", "winrate_lo", "winrate_hi"]])
                                   if r in s.index else "" for r in rules]
        for base in BASELINES:
            cols = [f"diff_vs_{base}", f"diff_vs_{base}_lo", f"diff_vs_{base}_hi"]
            if all(c in s for c in cols):
                out[f"{fam} vs {base}"] = [_fmt_interval(*s.loc[r, cols]) if r in s.index and r != base
                                           and np.isfinite(s.loc[r, cols[0]]) else "" for r in rules]
    out["paper UltraFeedback %"] = [f"{PAPER_WINRATES.loc[r, 'UltraFeedback']:.2f}" if r in PAPER_WINRATES.index
                                    else "" for r in rules]
    return out


@dataclass
class ModelDependence:
    """What `model_dependence` returns (square DataFrames indexed by family).

    pearson, spearman: correlation of the same pairs' IF under two families.
    tif_overlap: overlap coefficient of the two families' TIF selections at `keep`.
    sign_disagreement: share of pairs with IF > 0 under one family and IF < 0 under the other.
    helps_hurts: [a, b] share of pairs with IF > 0 under a and IF < 0 under b (a pair that helps a
        and hurts b); sign_disagreement = helps_hurts + helps_hurts.T.
    if_values: the aligned IF columns (one per family), pairs as rows.
    """

    pearson: pd.DataFrame
    spearman: pd.DataFrame
    tif_overlap: pd.DataFrame
    sign_disagreement: pd.DataFrame
    helps_hurts: pd.DataFrame
    if_values: pd.DataFrame
    keep: float = 0.64
    flipped: pd.Series | None = None  # gt_flipped of the aligned pairs (world only), for the breakdown

    def pairs(self) -> pd.DataFrame:
        """One row per unordered pair of families with every statistic."""
        fams = list(self.pearson.index)
        rows = []
        for i, a in enumerate(fams):
            for b in fams[i + 1:]:
                rows.append({"family_a": a, "family_b": b, "pearson": self.pearson.loc[a, b],
                             "spearman": self.spearman.loc[a, b], "tif_overlap": self.tif_overlap.loc[a, b],
                             "sign_disagreement": self.sign_disagreement.loc[a, b],
                             "helps_a_hurts_b": self.helps_hurts.loc[a, b],
                             "helps_b_hurts_a": self.helps_hurts.loc[b, a]})
                if self.flipped is not None:
                    f = self.flipped.to_numpy(dtype=bool)
                    change = np.sign(self.if_values[a].to_numpy()) * np.sign(self.if_values[b].to_numpy()) < 0
                    rows[-1]["sign_disagreement_clean"] = float(change[~f].mean()) if (~f).any() else float("nan")
                    rows[-1]["sign_disagreement_flipped"] = float(change[f].mean()) if f.any() else float("nan")
        return pd.DataFrame(rows)


def model_dependence(tables_by_family: dict[str, pd.DataFrame], keep: float = 0.64,
                     select_params=None) -> ModelDependence:
    """Compare the IF of the same pairs (matched by pair_id) under several families."""
    fams = list(tables_by_family)
    if len(fams) < 2:
        raise TifkitError("model_dependence needs score tables of at least two families.")
    merged = None
    for fam, t in tables_by_family.items():
        if "if" not in t.columns or "pair_id" not in t.columns:
            raise TifkitError(f"The score table of '{fam}' needs 'pair_id' and 'if' columns.")
        part = t[["pair_id", "if"]].rename(columns={"if": fam})
        merged = part if merged is None else merged.merge(part, on="pair_id", how="inner")
    if len(merged) < 3:
        raise TifkitError(f"The families share only {len(merged)} pair ids; score the same pairs under each.")
    first = next(iter(tables_by_family.values()))
    flipped = None
    if "gt_flipped" in first.columns:
        flipped = merged[["pair_id"]].merge(first[["pair_id", "gt_flipped"]], on="pair_id", how="left")
        flipped = flipped.set_index("pair_id")["gt_flipped"].astype(bool)
    V = merged.set_index("pair_id")[fams]
    tif = {f: selection(V[[f]].rename(columns={f: "if"}), "tif", keep, select_params) for f in fams}
    pos = {f: V[f].to_numpy() > 0 for f in fams}
    neg = {f: V[f].to_numpy() < 0 for f in fams}

    def square(fn):
        return pd.DataFrame([[fn(a, b) for b in fams] for a in fams], index=fams, columns=fams)

    hh = square(lambda a, b: float(np.mean(pos[a] & neg[b])))
    return ModelDependence(
        pearson=V.corr(method="pearson"), spearman=V.corr(method="spearman"),
        tif_overlap=square(lambda a, b: overlap_coefficient(tif[a], tif[b])),
        sign_disagreement=hh + hh.T, helps_hurts=hh, if_values=V, keep=keep, flipped=flipped)
