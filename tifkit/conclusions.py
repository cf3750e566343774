"""Sentences that say whether a claim held, computed from the numbers (never typed by hand).

Each ``conclude_*`` takes what tifkit.report or tifkit.experiments returned and states the numbers,
the paper's beside them, and a verdict: "reproduces", "reproduces in part" or "does not reproduce".
The notebooks print them under their own analysis, so a claim that fails on our data says so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tifkit.report import PAPER, report_value, rule_difference

def conclude_quickstart(res, label: str = "full-data DPO") -> str:
    """Did preference training improve on the SFT model (oracle reward, WinRate vs SFT)?"""
    t, w = res.table, res.winrate
    r0, r1 = float(t.score_ref.mean()), float(t.score_policy.mean())
    c = res.counts
    state = ("beats" if w.lo > 0.5 else "loses to" if w.hi < 0.5 else "is not distinguishable from")
    return (f"{label} {state} the SFT model: WinRate {w.estimate:.3f} [95% {w.lo:.3f}, {w.hi:.3f}] on {len(t)} "
            f"test prompts (win/tie/loss {c['win']}/{c['tie']}/{c['loss']}); mean oracle reward {r0:.3f} -> {r1:.3f}.")


def _seed_interval(report: pd.DataFrame, name: str, stat: str) -> tuple[float, float, int]:
    """95% t-interval over runs (seeds) of one statistic of an `aggregate`d report: (lo, hi, runs);
    NaN edges when the report holds one run (no spread to measure)."""
    r = report[(report.section == "correlation") & (report.name == name) & report.statistic.str.startswith(stat)]
    if not len(r) or "value_std" not in r or "n_runs" not in r or int(r.n_runs.iloc[0]) < 2:
        return float("nan"), float("nan"), 1
    from scipy import stats

    n, m, sd = int(r.n_runs.iloc[0]), float(r.value.iloc[0]), float(r.value_std.iloc[0])
    h = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    return m - h, m + h, n


def conclude_correlation(report: pd.DataFrame) -> str:
    """Claim 4: LossDiff and IRM correlate positively with IF (Pearson and Spearman), LossDiff more.

    With a report aggregated over several seeds (`report.aggregate`: value_std, n_runs) a
    correlation counts as positive only when its 95% t-interval over seeds lies above 0; with one
    run, the point estimate decides and the sentence says that no interval over seeds exists."""
    v = {(n, s): report_value(report, "correlation", n, s) for n in ("lossdiff", "irm") for s in ("pearson", "spearman")}
    if any(np.isnan(x) for x in v.values()):
        return "Claim 4 cannot be checked: the score table lacks IF, LossDiff or IRM."
    iv = {k: _seed_interval(report, *k) for k in v}
    runs = max(n for _, _, n in iv.values())

    def shown(k):
        lo = iv[k][0]
        return v[k] > 0 if np.isnan(lo) else lo > 0

    def fmt(k):
        lo, hi, _ = iv[k]
        return f"{v[k]:.3f}" if np.isnan(lo) else f"{v[k]:.3f} [{lo:.2f}, {hi:.2f}]"

    positive = {n: shown((n, "pearson")) and shown((n, "spearman")) for n in ("lossdiff", "irm")}
    stronger = v[("lossdiff", "pearson")] > v[("irm", "pearson")] and v[("lossdiff", "spearman")] > v[("irm", "spearman")]
    nums = (f"LossDiff~IF Pearson {fmt(('lossdiff', 'pearson'))} / Spearman {fmt(('lossdiff', 'spearman'))} "
            f"(paper {PAPER['corr_lossdiff_if']:.2f}); IRM~IF Pearson {fmt(('irm', 'pearson'))} / Spearman "
            f"{fmt(('irm', 'spearman'))} (paper {PAPER['corr_irm_if']:.2f})")
    nums += (f"; means over {runs} seeds with 95% t-intervals over seeds" if runs > 1 else
             "; one run, so no interval over seeds")
    if all(positive.values()) and stronger:
        verdict = "Claim 4 reproduces: both proxies correlate positively with IF and LossDiff more strongly than IRM"
    elif all(positive.values()):
        verdict = ("Claim 4 reproduces only in part: both proxies correlate positively with IF, but LossDiff is "
                   "not the stronger one on both measures")
    elif positive["lossdiff"]:
        verdict = ("Claim 4 reproduces only in part: LossDiff correlates positively with IF, IRM does not "
                   + ("(its interval over seeds reaches 0 or below)" if runs > 1 else "(not both correlations > 0)"))
    else:  # LossDiff, the stronger proxy of the claim, fails
        verdict = ("Claim 4 does not reproduce: LossDiff shows no positive correlation with IF on both measures"
                   + (" (IRM does)" if positive["irm"] else ""))
    return f"{verdict}. {nums}."


def conclude_auroc(report: pd.DataFrame) -> str:
    """Which score best flags the mislabelled pairs (AUROC, 0.5 = chance)."""
    a = report[report.section == "auroc"]
    if a.empty:
        return "No ground truth in the table: AUROC not computed."
    parts = ", ".join(f"{r.name} {r.value:.3f}" for r in a.sort_values("value", ascending=False).itertuples())
    return f"AUROC for finding the mislabelled pairs (low score = flagged; 0.5 is chance): {parts}."


def conclude_overlap(sweep: pd.DataFrame) -> str:
    """Claim 5: LossDiff-IRM overlaps TIF more than either proxy alone (at every keep ratio)."""
    piv = sweep.pivot_table(index="keep", columns="rule", values="overlap")
    need = {"lossdiff-irm", "lossdiff", "irm"}
    if not need <= set(piv.columns):
        return "Claim 5 cannot be checked: the table lacks LossDiff or IRM."
    wins = piv["lossdiff-irm"] > piv[["lossdiff", "irm"]].max(axis=1)
    nums = "; ".join(f"keep {k:g}: fusion {r['lossdiff-irm']:.3f}, LossDiff {r['lossdiff']:.3f}, IRM {r['irm']:.3f}"
                     for k, r in piv.iterrows())
    if wins.all():
        verdict = f"Claim 5 reproduces: LossDiff-IRM overlaps TIF more than either proxy alone at all {len(wins)} keep ratios"
    elif wins.any():
        verdict = (f"Claim 5 reproduces only in part: LossDiff-IRM overlaps TIF more than either proxy alone at "
                   f"{int(wins.sum())} of {len(wins)} keep ratios ({', '.join(f'{k:g}' for k in piv.index[wins])})")
    else:
        verdict = "Claim 5 does not reproduce: LossDiff-IRM never overlaps TIF more than the better single proxy"
    row = piv.loc[piv.index[np.argmin(np.abs(piv.index - PAPER["keep"]))]]
    lo, hi = PAPER["overlap_lossdiff_irm"]
    slo, shi = PAPER["overlap_single"]
    paper = (f" Paper: fusion {lo:.2f}-{hi:.2f}, single proxies {slo:.2f}-{shi:.2f}; ours at keep {row.name:g}: "
             f"fusion {row['lossdiff-irm']:.2f}, single {min(row['lossdiff'], row['irm']):.2f}-"
             f"{max(row['lossdiff'], row['irm']):.2f}; a random subset overlaps about "
             f"{sweep[sweep.keep == row.name].chance.iloc[0]:.2f}.")
    return f"{verdict}. {nums}.{paper}"


def conclude_groups(curves: pd.DataFrame, winrates: pd.DataFrame | None = None, tol: float = 0.0) -> str:
    """Claim 2 from the D_val curves (mean over seeds) and, when given, the groups' WinRates.

    Checked: (a) medium ends with a lower validation loss than small and large; (b) medium ends
    with a larger margin than small and large; (c) small raises the validation loss above the
    warm-up model's; (d) large overfits: its validation loss ends above its minimum (by more than
    `tol`), or its WinRate on the test prompts is below medium's although its validation loss is
    lower (it fits the validation proxy, not the task)."""
    mean = curves.groupby(["group", "step"], sort=False)[["val_loss", "val_margin"]].mean().reset_index()
    need = {"small", "medium", "large"}
    if not need <= set(mean.group):
        return "Claim 2 needs the small, medium and large IF groups."
    last = mean.sort_values("step").groupby("group").last()
    start = float(mean[mean.step == 0].val_loss.mean())
    L, M = last.val_loss, last.val_margin
    a = L["medium"] < min(L["small"], L["large"])
    b = M["medium"] > max(M["small"], M["large"])
    c = L["small"] > start
    lg = mean[mean.group == "large"].sort_values("step")
    rise = float(lg.val_loss.iloc[-1] - lg.val_loss.min())
    rebound = float((lg.val_loss - lg.val_loss.cummin()).max())  # largest rise above the running minimum
    d_curve = rise > tol
    lines = [f"validation loss: warm-up {start:.4f}; final small {L['small']:.4f}, medium {L['medium']:.4f}, "
             f"large {L['large']:.4f}; final margin small {M['small']:.3f}, medium {M['medium']:.3f}, large {M['large']:.3f}."]
    checks = [("medium ends with the lowest validation loss", a), ("medium ends with the largest margin", b),
              ("small-IF raises the validation loss above the warm-up model's", c),
              (f"large-IF's validation loss ends above its minimum (by {rise:.4f}; largest rebound on the way "
               f"{rebound:.4f})", d_curve)]
    d_win = None
    if winrates is not None and len(winrates):
        w = winrates.set_index("name")
        if need <= set(w.index):
            d_win = w.loc["large", "winrate"] < w.loc["medium", "winrate"]
            lines.append(f"WinRate vs SFT: small {w.loc['small', 'winrate']:.3f}, medium {w.loc['medium', 'winrate']:.3f}, "
                         f"large {w.loc['large', 'winrate']:.3f}.")
            checks.append(("large-IF's model wins less often than medium's on the test prompts", d_win))
            checks.append(("medium's model wins most often", w.loc["medium", "winrate"] >= w.winrate.max()))
    held = [t for t, ok in checks if ok]
    failed = [t for t, ok in checks if not ok]
    core = a and c and (d_curve or bool(d_win))
    verdict = ("Claim 2 reproduces" if core and not failed else
               "Claim 2 reproduces in part" if held else "Claim 2 does not reproduce")
    return (f"{verdict}. Holds: {'; '.join(held) or 'none'}. Does not hold: {'; '.join(failed) or 'none'}. "
            + " ".join(lines))


def conclude_difference(d: dict, claim: str, what: str) -> str:
    """One sentence on a paired WinRate difference (from `rule_difference`)."""
    nums = (f"WinRate vs SFT {d['a']} {d['winrate_a']:.3f}, {d['b']} {d['winrate_b']:.3f}; difference "
            f"{d['diff']:+.3f} [95% {d['lo']:+.3f}, {d['hi']:+.3f}]")
    if d["lo"] > 0:
        return f"{claim} reproduces: {what} (the interval excludes 0). {nums}."
    if d["diff"] > 0:
        return f"{claim} points the paper's way but is not significant here: {what} on average, interval includes 0. {nums}."
    if d["hi"] < 0:
        return f"{claim} does not reproduce: the opposite holds (the interval excludes 0). {nums}."
    return f"{claim} does not reproduce here: no advantage ({nums})."


def conclude_benchmark(results: dict[str, dict]) -> str:
    """Claim 6 per family: LossDiff-IRM beats full data and the filters (annotation-gap, rm-margin)."""
    lines = []
    for fam, res in results.items():
        pp = res["per_prompt"]
        if "lossdiff-irm" not in set(pp.rule):
            lines.append(f"{fam}: LossDiff-IRM not run.")
            continue
        parts, sig, better = [], 0, 0
        others = [r for r in ("full", "annotation-gap", "rm-margin") if r in set(pp.rule)]
        for other in others:
            d = rule_difference(pp, "lossdiff-irm", other)
            better += d["diff"] > 0
            sig += d["lo"] > 0
            parts.append(f"vs {other} {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]")
        state = ("beats all" if sig == len(others) else f"beats {better} of {len(others)} on average "
                 f"({sig} significantly)")
        lines.append(f"{fam}: LossDiff-IRM {state} ({'; '.join(parts)}).")
    n_all = sum("beats all" in ln for ln in lines)
    verdict = ("Claim 6 reproduces in every family" if n_all == len(results) else
               f"Claim 6 reproduces in {n_all} of {len(results)} families")
    return verdict + ": " + " ".join(lines)


def conclude_model_dependence(md, agree: float = 0.9, control=None, margin: float = 0.1) -> str:
    """Claim 1: IF of the same pairs disagrees across families. Reproduces when the average
    cross-family Spearman correlation is below `agree` and some pairs change IF sign. `md` is one
    ModelDependence or a list of them (one per seed; the statistics are averaged).

    With `control` (a ModelDependence of one family under several initializations,
    `init_control_tables`) the disagreement must also exceed the within-family one: the mean
    cross-family Spearman must be at least `margin` below the within-family Spearman; otherwise the
    disagreement is put down to initialization, not to the family."""
    mds = md if isinstance(md, (list, tuple)) else [md]
    pr = pd.concat([m.pairs() for m in mds], ignore_index=True)
    pr = pr.groupby(["family_a", "family_b"], sort=False).mean(numeric_only=True).reset_index()
    rho, flip, ov = pr.spearman.mean(), pr.sign_disagreement.mean(), pr.tif_overlap.mean()
    lo = pr.loc[pr.spearman.idxmin()]
    nums = (f"mean cross-family Spearman {rho:.3f} (lowest {lo.family_a}~{lo.family_b} {lo.spearman:.3f}); "
            f"mean share of pairs whose IF changes sign {flip:.3f} (helps one model, hurts the other); "
            f"mean overlap of TIF selections at keep {mds[0].keep:g} {ov:.3f}")
    if "sign_disagreement_clean" in pr:
        nums += (f"; sign changes among correctly labelled pairs {pr.sign_disagreement_clean.mean():.3f}, among "
                 f"mislabelled pairs {pr.sign_disagreement_flipped.mean():.3f}")
    if len(mds) > 1:
        nums += f"; averaged over {len(mds)} seeds"
    if not (rho < agree and flip > 0):
        return f"Claim 1 does not reproduce: IF ranks agree across families (Spearman >= {agree}) ({nums})."
    if control is None:
        return f"Claim 1 reproduces: the value of a pair depends on the model ({nums})."
    cp = control.pairs()
    within, wflip = float(cp.spearman.mean()), float(cp.sign_disagreement.mean())
    ctl = (f"within one family across {len(control.spearman)} initializations: Spearman {within:.3f}, "
           f"sign changes {wflip:.3f}")
    if within - rho >= margin:
        note = (f" IF is itself unstable across initializations of one family (Spearman {within:.2f} < {agree}): "
                "much of the disagreement is seed dependence, the family adds to it." if within < agree else "")
        return (f"Claim 1 reproduces: families disagree more than initializations of one family do "
                f"({nums}; {ctl}).{note}")
    return (f"Claim 1 reproduces only weakly: IF disagrees across families, but about as much across "
            f"initializations of one family, so the disagreement cannot be put down to the family ({nums}; {ctl}).")


def conclude_cost(cost: pd.DataFrame) -> str:
    """Claim 7: LossDiff-IRM scoring is about two orders of magnitude cheaper than exact IF."""
    c = cost.set_index("method")
    parts = [f"{m}: {c.loc[m, 'seconds']:.2f} s for {int(c.loc[m, 'n_pairs'])} pairs ({c.loc[m, 'vs_lossdiff_irm']:.1f}x)"
             for m in c.index]
    best = max((c.loc[m, "vs_lossdiff_irm"] for m in c.index if m.startswith("if-")), default=float("nan"))
    if not np.isfinite(best):
        return "Claim 7 not checked: no exact IF timing."
    verdict = ("Claim 7 reproduces" if best >= 100 else
               f"Claim 7 does not reproduce at this model size: exact IF costs at most {best:.1f}x LossDiff-IRM "
               f"here, not ~{PAPER['cost_speedup']:.0f}x (the gap grows with the number of parameters; see docs/PERFORMANCE.md)")
    return f"{verdict}. {'; '.join(parts)}."
