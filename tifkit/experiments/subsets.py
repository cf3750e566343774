"""Subsets trained in worker processes (claims 2, 3): IF groups and the band-position sweep."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from tifkit import TifkitError

from tifkit.batch import needs_scores
from tifkit.config import SelectParams
from tifkit.experiments.core import evaluate_models, train_on_groups
from tifkit.pipeline import continue_stage, prepare, say, score_stage, selection_mask, sft_stage, warmup_stage
from tifkit.report import GROUP_NAMES, group_summary, if_groups
from tifkit.rules import stage_label
from tifkit.select import select
from tifkit.workers import quiet_params, quiet_pool_map, worker_count


# ------------------------------------------------------------------------------------------------
# Subsets trained in parallel: IF groups and the band-position sweep (claims 2 and 3)
#
# A "spec" names a subset of D_tr by how to recompute it from a seed's score table, so that worker
# processes need only (params, seed, spec): ("if-group", n_groups, name) for report.if_groups,
# ("band", width, center) for the TIF band (select rule "tif" at select.band_center = center, keep =
# width), ("rule", rule, keep) for a selection rule through the pipeline's cached continuation.


def group_specs(n_groups: int = 3) -> dict[str, tuple]:
    """{name: spec} of the IF groups ("small", "medium", "large" for three)."""
    names = GROUP_NAMES.get(n_groups, tuple(f"q{i + 1}" for i in range(n_groups)))
    return {name: ("if-group", int(n_groups), name) for name in names}


def band_label(center: float) -> str:
    """The name of the band centred at `center` in sweeps and figures, e.g. "band@0.50"."""
    return f"band@{center:.2f}"


def band_specs(width: float = 0.64, centers=(0.32, 0.41, 0.5, 0.59, 0.68)) -> dict[str, tuple]:
    """{band_label(center): spec} of TIF bands of fixed `width` at each centre (low IF to high IF)."""
    if not 0 < width <= 1:
        raise TifkitError(f"band width {width} is outside (0, 1]; give a fraction such as 0.64.")
    out = {}
    for c in centers:
        if not 0 <= c <= 1:
            raise TifkitError(f"band centre {c} is outside [0, 1]; give percentiles such as 0.32, 0.5, 0.68.")
        out[band_label(float(c))] = ("band", float(width), float(c))
    if len(out) != len(list(centers)):
        raise TifkitError("two band centres round to the same label; give centres at least 0.01 apart.")
    return out


def band_selection(table: pd.DataFrame, width: float, center: float, select_params=None):
    """The pairs of the TIF band of `width` centred at `center` (a percentile of IF): select.select
    with rule "tif", keep=width, band_center=center (explicit tif_lo/tif_hi edges are cleared). A
    centre too close to an end is clamped there by select (the band stays inside [0, 1]): at width
    0.64 centre 0.68 is exactly top-IF and 0.32 the lowest 64%."""
    sp = dataclasses.replace(select_params or SelectParams(), rule="tif", keep=float(width),
                             band_center=float(center), tif_lo=None, tif_hi=None)
    return select(table, sp)


def band_mask(table: pd.DataFrame, width: float, center: float, select_params=None) -> np.ndarray:
    """band_selection's mask."""
    return band_selection(table, width, center, select_params).mask


def spec_mask(ctx, table: pd.DataFrame | None, spec: tuple) -> np.ndarray:
    """The boolean mask over D_tr that `spec` names (see above)."""
    kind = spec[0]
    if kind == "if-group":
        return if_groups(table, spec[1])[spec[2]]
    if kind == "band":
        return band_mask(table, spec[1], spec[2], ctx.p.select)
    if kind == "rule":
        return selection_mask(ctx, spec[1], spec[2], table=table)
    raise TifkitError(f"Unknown subset kind {kind!r}; use 'if-group', 'band' or 'rule'.")


def _needs_scores(spec: tuple) -> bool:
    """Whether a subset needs the seed's score table: IF groups and bands do; a rule as the batch
    decides it (batch.needs_scores, from the rule registry)."""
    return spec[0] != "rule" or needs_scores(spec[1])


def _subset_task(p, seed: int, name: str, spec: tuple, evaluate: bool) -> dict:
    """One subset of one seed (in a worker or in this process): train it from the warm-up model
    (with D_val curves, except "rule" subsets, which use the pipeline's cached continuation, shared
    with the batch), evaluate it against SFT. Returns {"curves", "summary", "wins", "per_prompt"}."""
    ctx = prepare(p, seed)
    table = pd.read_parquet(score_stage(ctx)) if _needs_scores(spec) else None
    mask = np.asarray(spec_mask(ctx, table, spec), dtype=bool)
    if spec[0] == "rule":
        label = stage_label(spec[1], spec[2])  # the batch's name for this model: the same cache
        dirs, labels, curves = {name: continue_stage(ctx, label, mask)}, {name: label}, pd.DataFrame()
    else:
        run = train_on_groups(ctx, {name: mask})
        dirs, labels, curves = run.model_dirs, run.labels, run.curves
    summary = group_summary(table, {name: mask}) if table is not None and "if" in table else pd.DataFrame(
        [{"group": name, "n": int(mask.sum())}])
    summary.insert(1, "kind", spec[0])
    if spec[0] == "band":
        edges = band_selection(table, spec[1], spec[2], ctx.p.select).bands["if"]
        summary["width"], summary["center"] = spec[1], spec[2]
        summary["lo_pct"], summary["hi_pct"] = edges["lo"], edges["hi"]
    out = {"curves": curves.assign(seed=seed), "summary": summary.assign(seed=seed),
           "wins": pd.DataFrame(), "per_prompt": pd.DataFrame()}
    if evaluate:
        w = evaluate_models(ctx, dirs, labels)
        out["wins"] = w.assign(seed=seed)
        out["per_prompt"] = pd.DataFrame({"seed": seed, "rule": name, "prompt_idx": np.arange(len(w.verdicts.iloc[0])),
                                          "verdict": w.verdicts.iloc[0]})
    return out


def subset_experiment(p, seeds, specs: dict[str, tuple], evaluate: bool = True, workers: int | None = None) -> dict:
    """Train (from the warm-up model) and evaluate every subset in `specs` for every seed.

    The shared stages of each seed (SFT, warm-up, validation model, scores) run first in this
    process; then one task per (seed, subset) runs in `workers` processes (default: run.workers, 0 =
    one per core; see tifkit.workers.n_workers), spawned, one torch thread each (`tifkit.workers.quiet_pool_map`, the
    pattern of tifkit.batch.run_seeds). Every task is deterministic and cached on its own, so the numbers do
    not depend on the number of workers.

    Returns DataFrames, each with a seed column:
    - "curves": D_val loss/margin/accuracy per evaluation step ("group" = the subset's name; step 0
      is the warm-up model); none for "rule" subsets;
    - "summary": per subset its size, IF range, mean LossDiff/IRM and share of mislabelled pairs
      (group_summary), and for bands their width, centre and percentile edges lo_pct/hi_pct;
    - "winrates": evaluate_models rows (name, winrate with interval, rewards, verdicts);
    - "per_prompt": seed, rule (= subset name), prompt_idx, verdict, for paired comparisons
      (tifkit.experiments.paired_rule_difference, through tifkit.stats).
    """
    if not specs:
        raise TifkitError("subset_experiment got no subsets; pass group_specs(), band_specs() or rule specs.")
    seeds = [int(s) for s in seeds]
    for s in seeds:  # shared stages first, in this process (workers then only read them)
        ctx = prepare(p, s)
        sft_stage(ctx)
        warmup_stage(ctx)
        if any(_needs_scores(sp) for sp in specs.values()):
            score_stage(ctx)
    tasks = {(s, name): (_subset_task, (quiet_params(p), s, name, spec, evaluate)) for s in seeds for name, spec in specs.items()}
    workers = worker_count(p, len(tasks), workers)
    say(f"{len(tasks)} subsets ({len(seeds)} seed(s) x {len(specs)}) in {workers} worker process(es), one torch thread each")
    done = quiet_pool_map(tasks, workers, "subsets", p.run.show_progress)
    results = [done[key] for key in tasks]  # in task order, whatever order the workers finished in

    def cat(key):
        parts = [r[key] for r in results if len(r[key])]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    return {"curves": cat("curves"), "summary": cat("summary"), "winrates": cat("wins"), "per_prompt": cat("per_prompt")}


def band_sweep(p, seeds, width: float = 0.64, centers=(0.32, 0.41, 0.5, 0.59, 0.68), evaluate: bool = True,
               workers: int | None = None) -> dict:
    """The band-position sweep: a TIF band of fixed `width` moved from low to high IF (`centers`,
    percentiles), each band trained from the warm-up model with D_val curves and judged against
    SFT: the direct test that the middle of IF beats its ends. subset_experiment's frames."""
    return subset_experiment(p, seeds, band_specs(width, centers), evaluate, workers)
