"""The decisions the paper leaves open (notebook 06): how much each one moves each claim."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd

from tifkit import TifkitError
from tifkit.config import SelectParams
from tifkit.io import content_hash
from tifkit.report import report_value, score_report
from tifkit.rules import stage_label
from tifkit.select import select
from tifkit.stats import t_interval

from tifkit.experiments.benchmark import paired_rule_difference
from tifkit.experiments.families import train_ids_task
from tifkit.pipeline import core_scores, prepare
from tifkit.workers import quiet_params, quiet_pool_map, worker_count


# ------------------------------------------------------------------------------------------------
# The decisions the paper leaves open (issue 9; notebook 06): how much each one moves each claim.
#
# A "setting" is the run's parameters with ONE parameter changed ("default" changes none). Phase 1
# scores every (setting, seed) in worker processes (SFT, warm-up, validation model and the core score
# table through the pipeline's cached stages; the reward-model baseline is not needed here and is
# skipped) and computes the statistic behind each claim. Phase 2 trains and judges full data, TIF and
# LossDiff-IRM for the default and for the setting of each of the `winrate_top` decisions that move
# those statistics most. `decision_claims` turns both into one row per (claim, setting) with an
# interval over seeds and a verdict; `decision_robustness` says per claim which decisions flip it.

# decision -> (parameter, values swept; the run's own value is the baseline and is skipped here)
OPEN_DECISIONS: dict[str, tuple[str, tuple]] = {
    "validation-model start": ("train.val_start", ("sft",)),
    "IF measurement": ("score.if_measure", ("val_margin", "unweighted")),
    "band centre": ("select.band_center", (0.35, 0.65)),
    "beta": ("train.beta", (0.1, 1.0)),
    "log-prob reduction": ("score.reduction", ("mean",)),
    "noise type": ("world.systematic", (0.0,)),  # 0 = random flips; 0.8 (default) = mostly annotator-biased
    "flip rate": ("world.flip_rate", (0.0, 0.35)),
}

# claim rows: key -> (label, null value); `claim_statistics` computes them from the score statistics,
# the two WinRate rows come from the per-prompt verdicts of phase 2
DECISION_CLAIMS: dict[str, tuple[str, float]] = {
    "c4_lossdiff": ("4: Pearson r(LossDiff, IF) > 0", 0.0),
    "c4_irm": ("4: Pearson r(IRM, IF) > 0", 0.0),
    "c4_order": ("4: r(LossDiff, IF) - r(IRM, IF) > 0", 0.0),
    "c5_fusion": ("5: ov(fusion, TIF) - best single proxy > 0", 0.0),
    "auroc_if": ("AUROC of IF (mislabelled pairs) > 0.5", 0.5),
    "auroc_lossdiff": ("AUROC of LossDiff > 0.5", 0.5),
    "auroc_irm": ("AUROC of IRM > 0.5", 0.5),
    "c6_winrate": ("6: WinRate(LossDiff-IRM) - full > 0", 0.0),
    "c3_winrate": ("3/6: WinRate(TIF) - full > 0", 0.0),
}
WINRATE_CLAIMS = {"c6_winrate": "lossdiff-irm", "c3_winrate": "tif"}
# the values each claim statistic can take: a t-interval over a few seeds can reach past them (a
# correlation's to -1.2 at three seeds), so every interval is cut to its statistic's range, which keeps
# its coverage (the mean lies inside the range)
CLAIM_RANGES: dict[str, tuple[float, float]] = {
    "c4_lossdiff": (-1.0, 1.0), "c4_irm": (-1.0, 1.0), "c4_order": (-2.0, 2.0), "c5_fusion": (-1.0, 1.0),
    "auroc_if": (0.0, 1.0), "auroc_lossdiff": (0.0, 1.0), "auroc_irm": (0.0, 1.0),
    "c6_winrate": (-1.0, 1.0), "c3_winrate": (-1.0, 1.0),
}
# the verdicts: with two seeds or more, from the interval; from one seed, only the direction of the
# point estimate ("above" / "below" the null), since one seed cannot show training noise
VERDICTS = ("fails", "below", "unclear", "above", "holds")


def decision_settings(p, decisions: dict | None = None) -> list[dict]:
    """The settings of a sweep, default first: [{"setting", "decision", "parameter", "value"}].

    `decisions` is {decision: (parameter "section.key", values)} (default OPEN_DECISIONS); a value
    equal to the run's own is skipped (it is the default). Setting names are "parameter=value"."""
    out = [{"setting": "default", "decision": "default", "parameter": "", "value": None}]
    for decision, (param, values) in (OPEN_DECISIONS if decisions is None else decisions).items():
        section, _, key = str(param).partition(".")
        if not hasattr(p, section) or not hasattr(getattr(p, section), key):
            raise TifkitError(f"Decision '{decision}' names an unknown parameter {param!r}; use section.key, "
                              "e.g. train.beta.")
        for v in values:
            if v == getattr(getattr(p, section), key):
                continue
            name = f"{param}={v:g}" if isinstance(v, float) else f"{param}={v}"
            if any(s["setting"] == name for s in out):
                raise TifkitError(f"Setting {name} appears twice; list each value of a decision once.")
            out.append({"setting": name, "decision": decision, "parameter": param, "value": v})
    return out


def setting_params(p, parameter: str, value):
    """`p` with one parameter ("section.key") set to `value` (validated by the section's own checks)."""
    if not parameter:
        return p
    section, _, key = parameter.partition(".")
    try:
        sec = dataclasses.replace(getattr(p, section), **{key: value})
    except (TypeError, ValueError) as e:
        raise TifkitError(f"Setting {parameter}={value!r} is invalid ({e}); choose another value.") from None
    return dataclasses.replace(p, **{section: sec})


def decision_statistics(table: pd.DataFrame, select_params=None) -> dict[str, float]:
    """The score statistics behind claims 4 and 5 and the AUROCs, from one score table
    (tifkit.report.score_report at select_params.keep): pearson_/spearman_{lossdiff,irm}_if,
    overlap_{lossdiff-irm,lossdiff,irm} with the TIF selection, auroc_{if,lossdiff,irm} for the
    world's mislabelled pairs (gt_flipped; evaluation only), and flipped_share."""
    sp = select_params or SelectParams()
    rep = score_report(table, sp.keep, sp, rules=("lossdiff-irm", "lossdiff", "irm"))
    out = {}
    for name in ("lossdiff", "irm"):
        out[f"pearson_{name}_if"] = report_value(rep, "correlation", name, "pearson")
        out[f"spearman_{name}_if"] = report_value(rep, "correlation", name, "spearman")
    for rule in ("lossdiff-irm", "lossdiff", "irm"):
        out[f"overlap_{rule}"] = report_value(rep, "overlap", rule)
    for name in ("if", "lossdiff", "irm"):
        out[f"auroc_{name}"] = report_value(rep, "auroc", name)
    out["flipped_share"] = float(table["gt_flipped"].mean()) if "gt_flipped" in table else float("nan")
    return out


def claim_statistics(s: dict) -> dict[str, float]:
    """The score-based claim rows of DECISION_CLAIMS from decision_statistics' numbers."""
    return {"c4_lossdiff": s["pearson_lossdiff_if"], "c4_irm": s["pearson_irm_if"],
            "c4_order": s["pearson_lossdiff_if"] - s["pearson_irm_if"],
            "c5_fusion": s["overlap_lossdiff-irm"] - max(s["overlap_lossdiff"], s["overlap_irm"]),
            "auroc_if": s["auroc_if"], "auroc_lossdiff": s["auroc_lossdiff"], "auroc_irm": s["auroc_irm"]}


def core_table_task(p, seed: int) -> str:
    """Worker task: a run's SFT, warm-up and validation models and its core score table (IRM,
    LossDiff, IF; the TIF flags are computed from it where needed, with each setting's select
    parameters; no reward-model margin, which this sweep does not use and which would train
    a reward model per run folder): tifkit.pipeline.core_scores, the file score_stage builds on."""
    return str(core_scores(prepare(p, seed)))


def _settings_order(settings: list[dict]) -> list[dict]:
    """Default first, then the settings that build another world (their own SFT model), then the
    rest: two workers rarely wait on one SFT model's file lock."""
    return sorted(settings, key=lambda s: (s["setting"] != "default", not s["parameter"].startswith("world.")))


def statistic_verdict(est: float, lo: float, hi: float, null: float, n_seeds: int) -> str:
    """holds / fails / unclear from an interval over two seeds or more; from one seed (or without an
    interval) only a direction, above / below the null (unclear on it): not a verdict."""
    if not np.isfinite(est):
        return "n/a"
    if n_seeds < 2 or not (np.isfinite(lo) and np.isfinite(hi)):
        return "above" if est > null else "below" if est < null else "unclear"
    return "holds" if lo > null else "fails" if hi < null else "unclear"


def _in_range(key: str, lo: float, hi: float) -> tuple[float, float]:
    """An interval cut to CLAIM_RANGES[key] (a missing edge, NaN, stays NaN)."""
    return float(np.clip(lo, *CLAIM_RANGES[key])), float(np.clip(hi, *CLAIM_RANGES[key]))


def _mark_unmoved(rows: list[dict], values: dict) -> None:
    """Set each row's `moved`: False when its setting gives the default's per-seed values exactly (the
    same seeds, the same floats): that setting cannot move the statistic (band centre and a
    correlation, say), so its cell is the default's by construction and is no evidence either way."""
    for r in rows:
        base = values.get((r["claim"], "default"))
        mine = values[r["claim"], r["setting"]]
        r["moved"] = not (r["setting"] != "default" and base is not None and mine[0] == base[0]
                          and np.array_equal(mine[1], base[1], equal_nan=True))


def rank_decisions(claims: pd.DataFrame) -> pd.DataFrame:
    """Rank the decisions by how far they move the score-based claim statistics: per setting the
    largest |estimate - default's estimate| over the claim rows of DECISION_CLAIMS (WinRate rows
    excluded) and the number of rows whose verdict differs from the default's; per decision its
    setting that moves most. Columns: decision, setting, movement, verdict_changes, moved_most
    (the claim row), sorted by movement (largest first)."""
    c = claims[~claims.claim.isin(list(WINRATE_CLAIMS))]
    base = c[c.setting == "default"].set_index("claim")
    rows = []
    for (decision, setting), g in c[c.setting != "default"].groupby(["decision", "setting"], sort=False):
        g = g.set_index("claim")
        delta = (g.estimate - base.estimate.reindex(g.index)).abs()
        changed = int((g.verdict != base.verdict.reindex(g.index)).sum())
        rows.append({"decision": decision, "setting": setting, "movement": float(delta.max()),
                     "verdict_changes": changed, "moved_most": str(delta.idxmax()) if delta.notna().any() else ""})
    if not rows:
        return pd.DataFrame(columns=["decision", "setting", "movement", "verdict_changes", "moved_most"])
    df = pd.DataFrame(rows).sort_values(["movement", "verdict_changes"], ascending=False)
    return df.groupby("decision", sort=False).head(1).reset_index(drop=True)


def decision_claims(stats: pd.DataFrame, per_prompt: pd.DataFrame | None = None, n_bootstrap: int = 10000,
                    seed: int = 0) -> pd.DataFrame:
    """One row per (claim, setting): estimate (mean over seeds), lo, hi, per_seed (JSON), n_seeds,
    null, verdict (`statistic_verdict`: holds / fails / unclear; above / below from one seed) and moved
    (False: the setting gives the default's per-seed values exactly, `_mark_unmoved`).

    `stats`: one row per (setting, seed) with columns setting, decision, seed and
    decision_statistics' keys; the score-based claims get a t-interval over the seeds (none with one
    seed), cut to the statistic's range (`CLAIM_RANGES`). `per_prompt`: rows with setting, seed, rule,
    prompt_idx, verdict for full, tif-* and lossdiff-irm-*; the WinRate claims get the paired
    hierarchical bootstrap over seeds then prompts (paired_rule_difference)."""
    import json

    rows = []
    values = {}  # (claim, setting) -> (seeds, per-seed values): what _mark_unmoved compares
    decision_of = dict(zip(stats.setting, stats.decision))
    for setting, g in stats.groupby("setting", sort=False):
        g = g.sort_values("seed")
        per = [claim_statistics(r) for r in g.to_dict("records")]
        for key in next(iter(per)):
            vals = [x[key] for x in per]
            est, lo, hi = t_interval(vals)
            lo, hi = _in_range(key, lo, hi)
            null = DECISION_CLAIMS[key][1]
            n = int(np.isfinite(vals).sum())
            values[key, setting] = (tuple(g.seed), np.asarray(vals, dtype=float))
            rows.append({"claim": key, "label": DECISION_CLAIMS[key][0], "setting": setting,
                         "decision": decision_of[setting], "estimate": est, "lo": lo, "hi": hi,
                         "per_seed": json.dumps({str(s): round(float(v), 4) for s, v in zip(g.seed, vals)}),
                         "n_seeds": n, "null": null, "verdict": statistic_verdict(est, lo, hi, null, n)})
    if per_prompt is not None and len(per_prompt):
        for setting, g in per_prompt.groupby("setting", sort=False):
            rules = set(g.rule)
            for key, prefix in WINRATE_CLAIMS.items():
                label = next((r for r in sorted(rules) if r == prefix or r.startswith(prefix + "-")), None)
                if label is None or "full" not in rules:
                    continue
                d = paired_rule_difference(g, label, "full", "verdict", n_bootstrap, seed)
                lo, hi = _in_range(key, d["lo"], d["hi"])
                per_seed = (g[g.rule == label].groupby("seed").verdict.mean()
                            - g[g.rule == "full"].groupby("seed").verdict.mean())
                # the per-prompt verdicts themselves: equal to the default's only when the setting
                # trained and judged the same models
                kept = g[g.rule.isin([label, "full"])].sort_values(["rule", "seed", "prompt_idx"])
                values[key, setting] = (tuple(per_seed.index), kept.verdict.to_numpy(dtype=float))
                rows.append({"claim": key, "label": DECISION_CLAIMS[key][0], "setting": setting,
                             "decision": decision_of.get(setting, setting), "estimate": d["diff"], "lo": lo,
                             "hi": hi, "per_seed": json.dumps({str(s): round(float(v), 4)
                                                               for s, v in per_seed.items()}),
                             "n_seeds": d["n_seeds"], "null": 0.0,
                             "verdict": statistic_verdict(d["diff"], lo, hi, 0.0, d["n_seeds"])})
    _mark_unmoved(rows, values)
    return pd.DataFrame(rows)


def decision_robustness(claims: pd.DataFrame) -> pd.DataFrame:
    """Per claim: its verdict at the default, the settings whose verdict differs, and a status:
    "robust" (every setting tried gives the default's verdict, holds or fails; "<verdict> under every
    setting" when that verdict is unclear, or a one-seed direction), "hinges on <decision>" (only that
    decision's settings change it), "hinges on several decisions: ..." otherwise, "default only (not
    varied)" when no other setting measured it, "no setting tried can move it" when every other one
    gave the default's values. Settings that cannot move the
    statistic (`moved` False: the default's values exactly) are no evidence and are left out of all of
    this; `cannot_move` names them. Also holds_under: the settings under which it holds, and
    n_settings (the default and the settings that can move it)."""
    rows = []
    if "moved" not in claims:
        claims = claims.assign(moved=True)
    for claim, g in claims.groupby("claim", sort=False):
        base = g[g.setting == "default"]
        if base.empty:
            continue
        v0 = base.verdict.iloc[0]
        fixed = g[~g.moved.astype(bool)]
        g = g[g.moved.astype(bool)]
        other = g[g.setting != "default"]
        differ = other[other.verdict != v0]
        decisions = list(dict.fromkeys(differ.decision))
        status = ("no setting tried can move it" if other.empty and len(fixed)
                  else "default only (not varied)" if other.empty
                  else ("robust" if v0 in ("holds", "fails") else f"{v0} under every setting") if not decisions
                  else f"hinges on {decisions[0]}" if len(decisions) == 1
                  else "hinges on several decisions: " + ", ".join(decisions))
        holds = g[g.verdict == "holds"].setting.tolist()
        rows.append({"claim": claim, "label": g.label.iloc[0], "default_verdict": v0,
                     "default_estimate": float(base.estimate.iloc[0]), "n_settings": len(g), "status": status,
                     "differs_under": ", ".join(f"{s} ({v})" for s, v in zip(differ.setting, differ.verdict)),
                     "holds_under": ", ".join(holds), "cannot_move": ", ".join(fixed.setting)})
    return pd.DataFrame(rows)


def decision_sweep(p, seeds, decisions: dict | None = None, winrate_top: int = 3, workers: int | None = None) -> dict:
    """The open-decisions study. Phase 1: for each setting (decision_settings) and seed, the run's
    stages and core score table in worker processes, and decision_statistics. Phase 2: for the
    default and for the most-moving setting of each of the `winrate_top` decisions that move the
    score-based claims most (rank_decisions), full data, TIF and LossDiff-IRM at select.keep, each
    trained two epochs from that setting's warm-up model and judged against its SFT model, in
    worker processes. Every stage is cached (a rerun trains nothing).

    Returns {"settings", "tables" ({(setting, seed): path of its core score table}), "stats" (one row
    per setting and seed), "claims" (decision_claims),
    "ranking" (rank_decisions), "winrate_settings", "per_prompt", "robustness", "seconds"}."""
    t0 = time.time()
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise TifkitError("decision_sweep needs at least one seed.")
    settings = decision_settings(p, decisions)
    params = {s["setting"]: setting_params(p, s["parameter"], s["value"]) for s in settings}
    order = _settings_order(settings)
    tasks = {(s["setting"], seed): (core_table_task, (quiet_params(params[s["setting"]]), seed))
             for s in order for seed in seeds}
    paths = quiet_pool_map(tasks, worker_count(p, len(tasks), workers), f"open decisions: {len(tasks)} score tables",
                      p.run.show_progress)
    info = {s["setting"]: s for s in settings}
    stats = []
    for (name, seed), path in paths.items():
        table = pd.read_parquet(path)
        stats.append({"setting": name, "decision": info[name]["decision"], "parameter": info[name]["parameter"],
                      "value": info[name]["value"], "seed": seed, "n_pairs": len(table),
                      **decision_statistics(table, params[name].select)})
    stats = pd.DataFrame(stats)
    claims = decision_claims(stats)
    ranking = rank_decisions(claims)
    chosen = ["default"] + ranking.setting.head(max(0, int(winrate_top))).tolist()
    per_prompt = pd.DataFrame()
    if winrate_top > 0:
        keep = p.select.keep
        labels = {rule: stage_label(rule, keep) for rule in ("full", "tif", "lossdiff-irm")}  # the batch's names
        wtasks, same = {}, {}  # same: (setting, seed, label) -> the task that trains the identical model
        for name in chosen:
            q = params[name]
            d = q.to_dict()
            trained = content_hash({k: d[k] for k in ("world", "data", "model", "sft", "train", "run")})
            for seed in seeds:
                table = pd.read_parquet(paths[name, seed])
                for rule, label in labels.items():
                    ids = table.pair_id.astype(str)[select(table, dataclasses.replace(q.select, rule=rule)).mask]
                    ids = tuple(sorted(ids))
                    model = (trained, seed, label, content_hash(ids))
                    same[name, seed, label] = model
                    if model not in wtasks:
                        wtasks[model] = (train_ids_task, (quiet_params(q), seed, label, ids))
        res = quiet_pool_map(wtasks, worker_count(p, len(wtasks), workers), f"open decisions: {len(wtasks)} trainings",
                        p.run.show_progress)
        per_prompt = pd.concat([res[m].assign(setting=k[0]) for k, m in same.items()], ignore_index=True)
        claims = decision_claims(stats, per_prompt, p.run.n_bootstrap, p.eval.seed)
    return {"settings": pd.DataFrame(settings), "tables": paths, "stats": stats, "claims": claims, "ranking": ranking,
            "winrate_settings": chosen, "per_prompt": per_prompt, "robustness": decision_robustness(claims),
            "seconds": round(time.time() - t0, 1)}
