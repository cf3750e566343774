"""Sentences that say whether a claim held, computed from the numbers (never typed by hand).

Each ``conclude_*`` takes what tifkit.report or tifkit.experiments returned and states the numbers,
the paper's beside them, and a verdict: "reproduces", "reproduces in part" or "does not reproduce".
The notebooks print them under their own analysis, so a claim that fails on our data says so.

One seed is not a verdict: trained models differ from seed to seed (initialization, batch order,
world) far more than the prompts of one seed do, and one seed cannot show that spread. From one seed
(or one run) every sentence says which way the numbers point ("points the paper's way on this one
seed"), never "reproduces" or "significantly", and ends with `ONE_SEED`, a sentence of its own.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tifkit.report import PAPER, report_value
from tifkit.stats import t_interval, t_interval_from_moments

ONE_SEED = ("One seed cannot show training noise (how much trained models differ from seed to seed), so this is "
            "not a verdict; the full scale (every seed, intervals over seeds and prompts) gives one.")


def claim_verdict(claim: str, outcome: str, one_seed: bool) -> str:
    """The verdict phrase of a claim ("Claim 4") for an outcome "yes", "part" or "no"; from one seed, a
    direction instead of a verdict (the caller appends `ONE_SEED`)."""
    if one_seed:
        return {"yes": f"On this one seed, {claim.lower()} points the paper's way",
                "part": f"On this one seed, {claim.lower()} points the paper's way only in part",
                "no": f"On this one seed, {claim.lower()} does not point the paper's way"}[outcome]
    return {"yes": f"{claim} reproduces", "part": f"{claim} reproduces only in part",
            "no": f"{claim} does not reproduce"}[outcome]


def _n_seeds(frame: pd.DataFrame | None) -> int:
    """Seeds in a table with a `seed` column (1 without one: a single run)."""
    if frame is None or "seed" not in getattr(frame, "columns", ()):
        return 1
    return int(frame["seed"].nunique())


def one_seed_note(text: str, n_seeds: int) -> str:
    """`text` with `ONE_SEED` appended when it rests on one seed."""
    return f"{text} {ONE_SEED}" if n_seeds <= 1 else text


def _seed_interval(report: pd.DataFrame, name: str, stat: str) -> tuple[float, float, int]:
    """95% t-interval over runs (seeds) of one correlation of an `aggregate`d report, cut to [-1, 1]
    (a correlation's t-interval over a few seeds can reach past them; the cut keeps its coverage):
    (lo, hi, runs); NaN edges when the report holds one run (no spread to measure). An aggregated
    report keeps only each statistic's mean, sd and run count: stats.t_interval_from_moments."""
    r = report[(report.section == "correlation") & (report.name == name) & report.statistic.str.startswith(stat)]
    if not len(r) or "value_std" not in r or "n_runs" not in r or int(r.n_runs.iloc[0]) < 2:
        return float("nan"), float("nan"), 1
    n = int(r.n_runs.iloc[0])
    _, lo, hi = t_interval_from_moments(float(r.value.iloc[0]), float(r.value_std.iloc[0]), n)
    return max(lo, -1.0), min(hi, 1.0), n


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
    one = runs < 2
    if all(positive.values()) and stronger:
        verdict = (claim_verdict("Claim 4", "yes", one) + ": both proxies correlate positively with IF and LossDiff "
                   "more strongly than IRM")
    elif all(positive.values()):
        verdict = (claim_verdict("Claim 4", "part", one) + ": both proxies correlate positively with IF, but "
                   "LossDiff is not the stronger one on both measures")
    elif positive["lossdiff"]:
        verdict = (claim_verdict("Claim 4", "part", one) + ": LossDiff correlates positively with IF, IRM does not "
                   + ("(its interval over seeds reaches 0 or below)" if runs > 1 else "(not both correlations > 0)"))
    else:  # LossDiff, the stronger proxy of the claim, fails
        verdict = (claim_verdict("Claim 4", "no", one) + ": LossDiff shows no positive correlation with IF on both "
                   "measures" + (" (IRM does)" if positive["irm"] else ""))
    return one_seed_note(f"{verdict}. {nums}.", runs)


def conclude_auroc(report: pd.DataFrame) -> str:
    """Which score best flags the mislabelled pairs (AUROC, 0.5 = chance)."""
    a = report[report.section == "auroc"]
    if a.empty:
        return "No ground truth in the table: AUROC not computed."
    parts = ", ".join(f"{r.name} {r.value:.3f}" for r in a.sort_values("value", ascending=False).itertuples())
    return f"AUROC for finding the mislabelled pairs (low score = flagged; 0.5 is chance): {parts}."


def conclude_overlap(sweep: pd.DataFrame, n_seeds: int | None = None) -> str:
    """Claim 5: LossDiff-IRM overlaps TIF more than either proxy alone (at every keep ratio).
    `n_seeds`: the seeds the overlaps are averaged over (default: the sweep's `seed` column, else 1).

    With a `seed` column and two seeds or more, each keep ratio's margin (fusion minus the better
    single proxy, per seed) gets a 95% t-interval over seeds (tifkit.stats.t_interval) and counts for
    the claim only when the interval lies above 0; from one seed the mean margins give a direction."""
    n_seeds = _n_seeds(sweep) if n_seeds is None else int(n_seeds)
    one = n_seeds < 2
    piv = sweep.pivot_table(index="keep", columns="rule", values="overlap")
    need = {"lossdiff-irm", "lossdiff", "irm"}
    if not need <= set(piv.columns):
        return "Claim 5 cannot be checked: the table lacks LossDiff or IRM."
    nums = "; ".join(f"keep {k:g}: fusion {r['lossdiff-irm']:.3f}, LossDiff {r['lossdiff']:.3f}, IRM {r['irm']:.3f}"
                     for k, r in piv.iterrows())
    if one or "seed" not in sweep:
        wins = piv["lossdiff-irm"] > piv[["lossdiff", "irm"]].max(axis=1)
        below = ~wins
    else:
        per = sweep.pivot_table(index=["keep", "seed"], columns="rule", values="overlap")
        margin = per["lossdiff-irm"] - per[["lossdiff", "irm"]].max(axis=1)
        ivs = {k: (t_interval(m.to_numpy()), int((m > 0).sum()), len(m)) for k, m in margin.groupby(level="keep")}
        wins = pd.Series({k: iv[0][1] > 0 for k, iv in ivs.items()}).reindex(piv.index)
        below = pd.Series({k: iv[0][2] < 0 for k, iv in ivs.items()}).reindex(piv.index)
        nums += (". Fusion minus the better single proxy, mean over seeds with its 95% t-interval, and the seeds "
                 "where fusion is ahead: " + "; ".join(f"keep {k:g} {e:+.3f} [{lo:+.3f}, {hi:+.3f}], {b} of {n}"
                                                       for k, ((e, lo, hi), b, n) in ivs.items()))
    if wins.all():
        verdict = (claim_verdict("Claim 5", "yes", one) + f": LossDiff-IRM overlaps TIF more than either proxy alone "
                   f"at all {len(wins)} keep ratios")
    elif wins.any():
        verdict = (claim_verdict("Claim 5", "part", one) + f": LossDiff-IRM overlaps TIF more than either proxy alone "
                   f"at {int(wins.sum())} of {len(wins)} keep ratios ({', '.join(f'{k:g}' for k in piv.index[wins])})")
    elif one or below.all():
        verdict = (claim_verdict("Claim 5", "no", one) + ": LossDiff-IRM never overlaps TIF more than the better "
                   "single proxy" + ("" if one else " (below it, with the interval, at every keep ratio)"))
    else:
        verdict = (claim_verdict("Claim 5", "no", one) + ": LossDiff-IRM overlaps TIF more than the better single "
                   f"proxy at no keep ratio with an interval above 0 (below it at {int(below.sum())} of {len(below)})")
    row = piv.loc[piv.index[np.argmin(np.abs(piv.index - PAPER["keep"]))]]
    lo, hi = PAPER["overlap_lossdiff_irm"]
    slo, shi = PAPER["overlap_single"]
    paper = (f" Paper: fusion {lo:.2f}-{hi:.2f}, single proxies {slo:.2f}-{shi:.2f}; ours at keep {row.name:g}: "
             f"fusion {row['lossdiff-irm']:.2f}, single {min(row['lossdiff'], row['irm']):.2f}-"
             f"{max(row['lossdiff'], row['irm']):.2f}; a random subset overlaps about "
             f"{sweep[sweep.keep == row.name].chance.iloc[0]:.2f}.")
    return one_seed_note(f"{verdict}. {nums}.{paper}", n_seeds)


def conclude_groups(curves: pd.DataFrame, winrates: pd.DataFrame | None = None, tol: float = 0.0,
                    differences: dict | None = None) -> str:
    """Claim 2 from the D_val curves (mean over seeds) and, when given, the groups' WinRates.

    Checked: (a) medium ends with a lower validation loss than small and large; (b) medium ends
    with a larger margin than small and large; (c) small raises the validation loss above the
    warm-up model's; (d) large overfits: its validation loss ends above its minimum (by more than
    `tol`), or its WinRate on the test prompts is below medium's although its validation loss is
    lower (it fits the validation proxy, not the task).

    `differences`: {"small": d, "large": d} with d = experiments.paired_rule_difference(per_prompt,
    "medium", end) (WinRate of medium minus the end's, paired on the same seeds and prompts, the
    hierarchical interval). With them, over two seeds or more, the WinRate checks hold only when the
    interval lies above 0, and the sentence gives each difference with its interval and tally; without
    them (or from one seed) the mean WinRates decide."""
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
            lines.append(f"WinRate vs SFT: small {w.loc['small', 'winrate']:.3f}, medium {w.loc['medium', 'winrate']:.3f}, "
                         f"large {w.loc['large', 'winrate']:.3f}.")
            paired = differences if differences and {"small", "large"} <= set(differences) and min(
                int(d["n_seeds"]) for d in differences.values()) >= 2 else None
            if paired:
                ahead = {end: paired[end]["lo"] > 0 for end in ("small", "large")}
                d_win = ahead["large"]
                lines.append("Medium minus each end, paired on the same seeds and prompts (95% interval over seeds "
                             "and prompts; seeds where medium wins more often): " + "; ".join(
                                 f"vs {end} {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}], {d['n_better']} of "
                                 f"{d['n_seeds']}" for end, d in ((e, paired[e]) for e in ("small", "large"))) + ".")
                checks.append(("large-IF's model wins less often than medium's on the test prompts (interval above 0)",
                               d_win))
                checks.append(("medium's model wins more often than both ends (intervals above 0)", all(ahead.values())))
            else:
                d_win = w.loc["large", "winrate"] < w.loc["medium", "winrate"]
                checks.append(("large-IF's model wins less often than medium's on the test prompts", d_win))
                checks.append(("medium's model wins most often", w.loc["medium", "winrate"] >= w.winrate.max()))
    held = [t for t, ok in checks if ok]
    failed = [t for t, ok in checks if not ok]
    core = a and c and (d_curve or bool(d_win))
    n_seeds = _n_seeds(curves)
    one = n_seeds < 2
    verdict = (claim_verdict("Claim 2", "yes", one) if core and not failed else
               ("Claim 2 reproduces in part" if not one else claim_verdict("Claim 2", "part", one)) if held else
               claim_verdict("Claim 2", "no", one))
    return one_seed_note(f"{verdict}. Holds: {'; '.join(held) or 'none'}. Does not hold: {'; '.join(failed) or 'none'}. "
                         + " ".join(lines), n_seeds)


def conclude_difference(d: dict, claim: str, what: str, n_seeds: int | None = None) -> str:
    """One sentence on a paired WinRate difference (from
    `experiments.paired_rule_difference`); `n_seeds` defaults to d["n_seeds"] (1 when absent). From
    one seed: its direction, the interval over prompts, and `ONE_SEED`."""
    n_seeds = int(d.get("n_seeds", 1) if n_seeds is None else n_seeds)
    wa, wb = d.get("winrate_a", d.get("mean_a")), d.get("winrate_b", d.get("mean_b"))
    nums = (f"WinRate vs SFT {d['a']} {wa:.3f}, {d['b']} {wb:.3f}; difference "
            f"{d['diff']:+.3f} [95% {d['lo']:+.3f}, {d['hi']:+.3f}]")
    if n_seeds < 2:
        way = ("points the paper's way" if d["diff"] > 0 else "points against the paper" if d["diff"] < 0 else
               "shows no difference")
        return (f"On this one seed, {claim.lower()} {way} ({what}: {nums}; the interval resamples prompts only). "
                f"{ONE_SEED}")
    if d["lo"] > 0:
        return f"{claim} reproduces: {what} (the interval excludes 0). {nums}."
    if d["diff"] > 0:
        return f"{claim} points the paper's way but is not significant here: {what} on average, interval includes 0. {nums}."
    if d["hi"] < 0:
        return f"{claim} does not reproduce: the opposite holds (the interval excludes 0). {nums}."
    return f"{claim} does not reproduce here: no advantage ({nums})."


def conclude_model_dependence(md, agree: float = 0.9, control=None, margin: float = 0.1) -> str:
    """Claim 1: IF of the same pairs disagrees across families. Reproduces when the average
    cross-family Spearman correlation is below `agree` and some pairs change IF sign. `md` is one
    ModelDependence or a list of them (one per seed; the statistics are averaged).

    With `control` (ModelDependence of one family under several initializations,
    `init_control_tables`: one per seed, in the order of `md`, or a single one for the first seed)
    the disagreement must also exceed the within-family one, compared on matched seeds: on each seed
    the gap is the within-family Spearman minus that seed's mean cross-family Spearman, and the mean
    gap must be at least `margin`; otherwise the disagreement is put down to initialization, not to
    the family. From one seed the sentence gives a direction and says it is not a verdict."""
    mds = list(md) if isinstance(md, (list, tuple)) else [md]
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
    one = len(mds) < 2
    if not (rho < agree and flip > 0):
        return one_seed_note(claim_verdict("Claim 1", "no", one) + f": IF ranks agree across families (Spearman >= "
                             f"{agree}) ({nums}).", len(mds))
    if control is None:
        return one_seed_note(claim_verdict("Claim 1", "yes", one) + f": the value of a pair depends on the model "
                             f"({nums}).", len(mds))
    ctls = list(control) if isinstance(control, (list, tuple)) else [control]
    matched = list(zip(mds, ctls))  # a single control is matched with the first seed only
    cross = np.array([float(m.pairs().spearman.mean()) for m, _ in matched])
    within = np.array([float(c.pairs().spearman.mean()) for _, c in matched])
    wflip = float(np.mean([c.pairs().sign_disagreement.mean() for _, c in matched]))
    gaps = within - cross
    gap = float(gaps.mean())
    n_inits = len(ctls[0].spearman)
    ctl = (f"within one family across {n_inits} initializations, on the same {len(matched)} seed(s): Spearman "
           f"{within.mean():.3f} against cross-family {cross.mean():.3f} on those seeds, a gap of {gap:.3f} (margin "
           f"{margin:g}; per seed {' / '.join(f'{g:+.3f}' for g in gaps)}, at least the margin in "
           f"{int((gaps >= margin).sum())} of {len(gaps)}); sign changes within the family {wflip:.3f}")
    if len(matched) < len(mds):
        ctl += f"; the control ran on {len(matched)} of the {len(mds)} seeds, so only those are compared"
    one = len(matched) < 2
    if gap >= margin:
        note = (f" IF is itself unstable across initializations of one family (Spearman {within.mean():.2f} < "
                f"{agree}): much of the disagreement is seed dependence, the family adds to it."
                if within.mean() < agree else "")
        return one_seed_note(claim_verdict("Claim 1", "yes", one) + ": families disagree more than initializations "
                             f"of one family do ({nums}; {ctl}).{note}", len(matched))
    if one:
        return one_seed_note(f"On this one seed, claim 1 points the paper's way only weakly: IF disagrees across "
                             f"families, but about as much across initializations of one family ({nums}; {ctl}).", 1)
    return (f"Claim 1 reproduces only weakly: IF disagrees across families, but about as much across "
            f"initializations of one family, so the disagreement cannot be put down to the family ({nums}; {ctl}).")


def cost_summary(cost: pd.DataFrame) -> pd.DataFrame:
    """Per method over the repeated timings of one run (`experiments.scoring_cost` rows, a `repeat`
    column when timed several times): median seconds and, of the time relative to LossDiff-IRM
    (each repeat's own ratio), the median, min and max. Index: method."""
    c = cost if "repeat" in cost else cost.assign(repeat=0)
    if "vs_lossdiff_irm" not in c:
        base = c[c.method == "lossdiff-irm"].set_index("repeat").seconds
        c = c.assign(vs_lossdiff_irm=c.seconds / c.repeat.map(base))
    g = c.groupby("method", sort=False)
    return pd.DataFrame({"n_pairs": g.n_pairs.first(), "repeats": g.size(), "seconds": g.seconds.median(),
                         "ratio": g.vs_lossdiff_irm.median(), "ratio_min": g.vs_lossdiff_irm.min(),
                         "ratio_max": g.vs_lossdiff_irm.max()})


def conclude_cost(cost: pd.DataFrame) -> str:
    """Claim 7: LossDiff-IRM scoring is about two orders of magnitude cheaper than exact IF. The
    ratio is the median over the repeated timings of this run, with its range (`cost_summary`)."""
    c = cost_summary(cost)
    reps = int(c.repeats.max())

    def ratio(m):
        r = c.loc[m]
        return (f"{r.ratio:.1f}x" if reps < 2 else f"{r.ratio:.1f}x, range {r.ratio_min:.1f}-{r.ratio_max:.1f}x")

    parts = [f"{m}: {c.loc[m, 'seconds']:.2f} s for {int(c.loc[m, 'n_pairs'])} pairs ({ratio(m)})" for m in c.index]
    exact = [m for m in c.index if m.startswith("if-")]
    if not exact or "lossdiff-irm" not in c.index:
        return "Claim 7 not checked: no exact IF timing."
    best = max(exact, key=lambda m: c.loc[m, "ratio"])
    r = c.loc[best]
    how = (f"the median over {reps} repeated timings in this run, range {r.ratio_min:.1f}-{r.ratio_max:.1f}x"
           if reps > 1 else "one timing; timings vary from run to run")
    if r.ratio >= 100:
        verdict = f"Claim 7 reproduces: exact IF costs {r.ratio:.1f}x LossDiff-IRM ({how})"
    else:
        verdict = (f"Claim 7 does not reproduce at this model size: exact IF costs at most {r.ratio:.1f}x LossDiff-IRM "
                   f"here ({how}), not ~{PAPER['cost_speedup']:.0f}x (the gap grows with the number of parameters; "
                   "see docs/PERFORMANCE.md)")
    return f"{verdict}. {'; '.join(parts)}."


# Why a decision of notebook 06 can change a claim's verdict: one sentence per swept parameter,
# printed only for the decisions that do change a verdict in the run at hand (`decision_mechanisms`).
DECISION_MECHANISMS = {
    "train.val_start": ("the validation model starts from SFT instead of the warm-up model, so LossDiff (loss at "
                        "the warm-up model minus loss at the validation model) measures a whole warm-up epoch of "
                        "change besides the step on D_val, while IF and hence TIF, computed at the warm-up model "
                        "with the validation gradient, do not use the validation model at all"),
    "score.if_measure": ("it changes the validation-side gradient that IF dots each pair's gradient with (the loss, "
                         "or margins without the sigmoid weights), so IF and the TIF band move while LossDiff, IRM "
                         "and their fusion, which never read IF, stay where they are"),
    "select.band_center": ("it moves every band (TIF's and the proxies') along its own ranking, so the overlaps and "
                           "the trained subsets change while the correlations of the scores do not"),
    "train.beta": ("beta scales the implicit reward margin inside the sigmoid of the DPO loss, so it changes which "
                   "pairs are already fit (small loss gradient) and retrains the warm-up model every score is "
                   "measured at"),
    "score.reduction": ("averaging log-probabilities over tokens divides each response's log-ratio by its length, "
                        "so the long, verbose responses that the biased annotator favours no longer dominate IRM "
                        "and LossDiff; IF changes too, since the per-pair gradient it dots with the validation "
                        "gradient is then that of the length-averaged loss, which changes how much the long "
                        "(often mislabelled) pairs weigh"),
    "world.systematic": ("with random flips instead of length-biased ones the mislabelled pairs no longer share a "
                         "pattern (long prompts, verbose answers) that a score can pick up, and the data are another "
                         "world with its own SFT model"),
    "world.flip_rate": ("the share of mislabelled pairs sets how much a selection can remove: at 0 there is nothing "
                        "to filter, at a high rate noise dominates the warm-up model every score is measured at"),
}


def decision_mechanisms(claims: pd.DataFrame) -> list[str]:
    """One sentence per decision that changes some claim's verdict against the default (notebook 06's
    claim table: claim, label, setting, decision, verdict): which claims, under which settings, and
    why (`DECISION_MECHANISMS`, by the setting's parameter)."""
    base = claims[claims.setting == "default"].set_index("claim").verdict
    out = []
    other = claims[(claims.setting != "default") & claims.claim.isin(base.index)]
    for decision, g in other.groupby("decision", sort=False):
        flips = g[g.verdict != g.claim.map(base)]
        if flips.empty:
            continue
        param = str(flips.setting.iloc[0]).split("=")[0]
        what = "; ".join(f"{r.label}: {base[r.claim]} -> {r.verdict} under {r.setting}" for r in flips.itertuples())
        why = DECISION_MECHANISMS.get(param, "no mechanism recorded for this parameter")
        out.append(f"**{decision}** changes {len(flips)} verdict(s) ({what}). Why: {why}.")
    return out
