"""The default batch: every seed and rule of a params file, summary tables and figures.

For each seed: SFT -> warm-up -> (scores when a rule needs them) -> continuation on each rule's
selection -> evaluation against SFT on the test prompts. The work runs in `run.workers` worker
processes (default one per CPU core), one torch thread each: first one task per seed (its stages, its
scores and its first rule), then one task per (seed, other rule). Every task is deterministic on its
own, so the numbers do not depend on the number of workers (tested). Then, over seeds:

- WinRate of each rule against SFT;
- the paired difference of each rule's WinRate against full data and against random selection;

each with a hierarchical bootstrap interval (seeds, then prompts within each seed: tifkit.stats), the
per-seed values and "better in k of n seeds"; the score diagnostics per seed; the oracle reward
distribution figure.

Outputs: ``<run.root>/<run.name>-batch/summary.csv``, ``per_prompt.parquet``, ``batch.json``; under
``figures/``: ``<name>_summary.csv``, ``<name>_score_diagnostics.csv``, the figures, and
``<name>_provenance.json`` (commit, hash of the tifkit sources, parameters, sha256 of every file the
batch wrote there; tifkit.results). The CSVs also carry the commit and source hash in columns, the
PNGs in text chunks.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tifkit import TifkitError
from tifkit.config import Params
from tifkit.io import atomic_write_text, write_parquet
from tifkit.pipeline import (continue_stage, evaluate_stage, prepare, say, score_stage, selection_mask, sft_stage,
                             warmup_stage)
from tifkit.plots import reward_distribution, save, winrate_bars
from tifkit.report import score_report
from tifkit.results import comparisons, provenance, source_hash, stamp_frame, stamp_png, write_manifest
from tifkit.rules import BASELINES, get_rule, rule_names, stage_label
from tifkit.stats import hierarchical_interval, paired_rules
from tifkit.workers import init_worker, n_workers, pool_map, quiet_params


# What the batch's results depend on: this module and every tifkit module it imports (results.provenance)
SOURCE_ROOTS = ("tifkit.batch",)


def needs_scores(rule: str) -> bool:
    """Whether `rule` selects on the score table (from the rule registry: it reads a score column)."""
    spec = get_rule(rule)
    return spec.needs_scores and not spec.ground_truth


def __getattr__(name: str):
    # NO_SCORES (the rules that need no score table) is read from the registry when asked, so rules
    # registered later are in it too
    if name == "NO_SCORES":
        return {r for r in rule_names() if not needs_scores(r)}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------------------------ one seed
def rule_rows(ctx, rule: str, table: pd.DataFrame | None) -> pd.DataFrame:
    """Train the continuation on `rule`'s selection, evaluate it; one row per test prompt."""
    params, seed = ctx.p, ctx.seed
    mask = selection_mask(ctx, rule, table=table)
    label = stage_label(rule, params.select.keep)
    res = evaluate_stage(ctx, label, continue_stage(ctx, label, mask))
    t = res.table
    say(f"seed {seed} {label}: kept {int(mask.sum())}/{len(mask)}, reward {t.score_policy.mean():.3f} "
        f"(SFT {t.score_ref.mean():.3f}), WinRate vs SFT {res.winrate.estimate:.3f}")
    return pd.DataFrame({
        "seed": seed, "rule": rule, "n_kept": int(mask.sum()), "prompt_idx": np.arange(len(t)), "prompt": t.prompt,
        "reward_policy": t.score_policy, "reward_sft": t.score_ref, "verdict": t.verdict_value,
        "len_policy": t.response_policy.str.len(), "len_sft": t.response_ref.str.len(),
    })


def start_seed(params: Params, seed: int, rules: list[str]):
    """A seed's shared stages (SFT, warm-up, scores if any rule needs them) and its first rule.
    Returns (context, score table or None, rows of rules[0])."""
    ctx = prepare(params, seed)
    say(f"seed {seed}: run folder {ctx.run_dir}")
    sft_stage(ctx)
    warmup_stage(ctx)
    table = pd.read_parquet(score_stage(ctx)) if any(needs_scores(r) for r in rules) else None
    return ctx, table, rule_rows(ctx, rules[0], table)


def run_seed(params: Params, seed: int, rules: list[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """All rules for one seed, in this process: (one row per (rule, test prompt), the score table or None)."""
    ctx, table, first = start_seed(params, seed, rules)
    rows = [first] + [rule_rows(ctx, r, table) for r in rules[1:]]
    return pd.concat(rows, ignore_index=True), table


# ------------------------------------------------------------------------------- worker processes
def _timed(fn, *args):
    """(fn(*args), {"wall_s", "cpu_s"}): wall and CPU seconds of this process for one task."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2),
                 "pid": os.getpid()}


def _start(params: Params, seed: int, rules: list[str]) -> tuple[pd.DataFrame, str | None]:
    ctx, table, rows = start_seed(params, seed, rules)
    if table is None:
        return rows, None
    return rows, str(score_stage(ctx))  # cached: the path of the table just made


def _rule(params: Params, seed: int, rule: str) -> pd.DataFrame:
    ctx = prepare(params, seed)
    table = pd.read_parquet(score_stage(ctx)) if needs_scores(rule) else None
    return rule_rows(ctx, rule, table)


def task_start(params: Params, seed: int, rules: list[str]):
    """Worker task: a seed's stages and first rule; ((its rows, the score table's path), timing)."""
    return _timed(_start, params, seed, rules)


def task_rule(params: Params, seed: int, rule: str):
    """Worker task: one more rule of a seed whose stages (and scores) are done; (rows, timing)."""
    return _timed(_rule, params, seed, rule)


def run_rule_tasks(variants: dict, seeds: list[int], rules_of: dict, workers: int, desc: str, show_progress: bool,
                   initializer=init_worker) -> tuple[dict, dict, dict]:
    """The one worker pool of the batch, the family grid and the benchmark study: every (variant, seed,
    rule), first one `task_start` per (variant, seed) (its shared stages and first rule), then, once it is
    done, one `task_rule` per other rule of that variant. `variants` is {key: Params} (progress bars off
    inside the workers: `workers.quiet_params`), `rules_of` {key: list of rules}. Returns ({(variant,
    seed, rule): per-prompt rows}, {(variant, seed): score table path, when one was made}, {variant:
    [one timing dict (seed, rule, wall_s, cpu_s, pid) per task]})."""
    rows: dict = {}
    paths: dict = {}
    timings: dict = {v: [] for v in variants}

    def then(key, result):  # a (variant, seed)'s shared stages are done: its other rules can start
        v, s, r, first = key
        out, t = result
        timings[v].append({"seed": s, "rule": r, **t})
        if not first:
            rows[v, s, r] = out
            return None
        rows[v, s, r], path = out
        if path:
            paths[v, s] = path
        return {(v, s, q, False): (task_rule, (variants[v], s, q)) for q in rules_of[v][1:]}

    tasks = {(v, s, rules_of[v][0], True): (task_start, (variants[v], s, rules_of[v])) for v in variants for s in seeds}
    pool_map(tasks, workers, desc, show_progress, then, initializer=initializer)
    return rows, paths, timings


def run_seeds(params: Params, seeds: list[int], rules: list[str], workers: int | None = None,
              timings: list | None = None) -> tuple[pd.DataFrame, dict[int, pd.DataFrame]]:
    """Every (seed, rule) of the batch: (per-prompt rows in seed-then-rule order, {seed: score table}).
    `timings`, when given, receives one dict per task (seed, rule, wall_s, cpu_s, pid).

    `workers` (default `n_workers(params)`) processes, spawned, one torch thread each; with one
    worker the same tasks run in this process, also on one torch thread. Per-stage progress bars
    are off in the workers; one bar counts the tasks."""
    rules = list(rules)
    if not rules:
        raise TifkitError("run.rules is empty; list the rules the batch should train, e.g. [full, random, lossdiff-irm].")
    n_tasks = len(seeds) * len(rules)
    workers = n_workers(params, n_tasks) if workers is None else max(1, int(workers))
    quiet = quiet_params(params)
    say(f"batch: {len(seeds)} seeds x {len(rules)} rules in {workers} worker process(es), one torch thread each")
    rows, paths, times = run_rule_tasks({0: quiet}, seeds, {0: rules}, workers, "batch", params.run.show_progress)
    if timings is not None:
        timings.extend(times[0])
    per_prompt = pd.concat([rows[0, s, r] for s in seeds for r in rules], ignore_index=True)
    tables = {s: pd.read_parquet(paths[0, s]) for s in seeds if (0, s) in paths}
    return per_prompt, tables


# ---------------------------------------------------------------------------------------- summaries
def score_diagnostics(tables: dict[int, pd.DataFrame], keep: float, select_params=None) -> pd.DataFrame:
    """report.score_report per seed (AUROC for mislabelled pairs, correlation with IF, overlap with
    TIF), then mean and std over seeds, with the paper's numbers beside them."""
    reports = [score_report(t, keep, select_params).assign(seed=s) for s, t in tables.items()]
    r = pd.concat(reports, ignore_index=True)
    keys = ["section", "name", "statistic", "paper"]
    out = r.groupby(keys, sort=False).value.agg(["mean", "std", "count"]).reset_index()
    per_seed = r.pivot_table(index=keys, columns="seed", values="value", sort=False).reset_index()
    per_seed.columns = [c if isinstance(c, str) else f"seed{c}" for c in per_seed.columns]
    return out.merge(per_seed, on=keys)


def _per_seed_json(d: dict) -> str:
    return json.dumps({str(k): round(float(v), 4) for k, v in d.items()})


def summarize(per_prompt: pd.DataFrame, n_bootstrap: int = 10000, seed: int = 0) -> pd.DataFrame:
    """One row per rule: rewards, WinRate vs SFT and the paired differences against full data and
    random selection, each with a hierarchical bootstrap interval (seeds, then prompts: tifkit.stats),
    its per-seed values (JSON) and the number of seeds in which the rule is better."""
    out = []
    base = {b: per_prompt[per_prompt.rule == b].sort_values(["seed", "prompt_idx"]) for b in BASELINES
            if b in set(per_prompt.rule)}
    for rule, g in per_prompt.groupby("rule", sort=False):
        g = g.sort_values(["seed", "prompt_idx"])
        wr = hierarchical_interval(g.verdict.to_numpy(), g.seed.to_numpy(), n_bootstrap, seed)
        row = {"rule": rule, "n_seeds": g.seed.nunique(), "n_prompts": len(g), "n_kept_mean": float(
            g.groupby("seed").n_kept.first().mean()),
            "reward_sft": g.reward_sft.mean(), "reward": g.reward_policy.mean(),
            "winrate_vs_sft": wr.estimate, "winrate_lo": wr.lo, "winrate_hi": wr.hi,
            "winrate_per_seed": _per_seed_json(wr.per_seed)}
        for b, bg in base.items():  # paired on the same prompts and seeds
            if rule == b:
                continue
            d = paired_rules(g, bg, rule, b, "verdict", n_bootstrap, seed)
            row.update({f"diff_vs_{b}": d.estimate, f"diff_vs_{b}_lo": d.lo, f"diff_vs_{b}_hi": d.hi,
                        f"diff_vs_{b}_per_seed": _per_seed_json(d.per_seed),
                        f"diff_vs_{b}_better": d.n_better})
        out.append(row)
    return pd.DataFrame(out)


# -------------------------------------------------------------------------------------------- batch
def run_batch(params: Params, seeds: list[int] | None = None, figures_dir: str | Path = "figures",
              workers: int | None = None) -> pd.DataFrame:
    t0 = time.time()
    seeds = list(seeds or params.run.seeds)
    rules = list(params.run.rules)
    figures_dir = Path(figures_dir)
    prov = provenance(params, SOURCE_ROOTS)  # the code that trains: recorded before the run, checked after it
    workers = n_workers(params, len(seeds) * len(rules)) if workers is None else workers
    timings: list[dict] = []
    per_prompt, tables = run_seeds(params, seeds, rules, workers, timings)
    seconds_runs = time.time() - t0
    if source_hash(roots=SOURCE_ROOTS) != prov["source_hash"]:
        prov["sources_changed_during_run"] = True
        print(f"[tifkit] warning: tifkit's sources changed while the batch ran (recorded: the code at its start, "
              f"{prov['source_hash']}); rerun it on settled code before committing its results.", flush=True)
    out_dir = Path(params.run.root) / f"{params.run.name}-batch"
    written: list[Path] = []
    tables = {s: t for s, t in tables.items() if "if" in t.columns}
    if tables:
        diag = score_diagnostics(tables, params.select.keep, params.select)
        path = figures_dir / f"{params.run.name}_score_diagnostics.csv"
        atomic_write_text(path, stamp_frame(diag, prov).to_csv(index=False, float_format="%.4f"))
        written.append(path)
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(diag.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    write_parquet(per_prompt, out_dir / "per_prompt.parquet")
    summary = summarize(per_prompt, params.run.n_bootstrap, params.eval.seed)
    comp = comparisons(per_prompt, params.run.n_bootstrap, params.eval.seed)
    path = figures_dir / f"{params.run.name}_comparisons.csv"
    atomic_write_text(path, stamp_frame(comp, prov).to_csv(index=False, float_format="%.4f"))
    written.append(path)
    stamped = stamp_frame(summary, prov).to_csv(index=False, float_format="%.4f")
    atomic_write_text(out_dir / "summary.csv", stamped)

    # the reward distribution figure: SFT, full data, oracle selection (and any other rule run)
    first = per_prompt[per_prompt.rule == rules[0]]
    dist = [pd.DataFrame({"label": "sft", "reward": first.reward_sft})]
    shown = [r for r in ("full", "oracle", "lossdiff-irm") if r in rules] or list(rules)[:3]
    dist += [pd.DataFrame({"label": r, "reward": per_prompt.loc[per_prompt.rule == r, "reward_policy"]})
             for r in shown]
    dist = pd.concat(dist, ignore_index=True)
    bars = save(winrate_bars(summary, title=f"{params.run.name}: WinRate against SFT, {len(seeds)} seeds (interval "
                                            f"over seeds and prompts), keep {params.select.keep:g} "
                                            f"({params.model.family})"),
                figures_dir / f"{params.run.name}_winrates.png")
    fig = reward_distribution(dist, ["sft"] + shown,
                              title=f"{params.run.name}: oracle reward on {len(first) // len(seeds)} test prompts x "
                                    f"{len(seeds)} seeds ({params.model.family})")
    fig_path = save(fig, figures_dir / f"{params.run.name}_reward_distribution.png")
    for png in (bars, fig_path):
        stamp_png(png, prov)
    path = figures_dir / f"{params.run.name}_summary.csv"
    atomic_write_text(path, stamped)
    written += [path, bars, fig_path]
    info = {"seeds": seeds, "rules": rules, "workers": workers, "seconds": round(time.time() - t0, 1),
            "seconds_training_and_evaluation": round(seconds_runs, 1),
            "cpu_seconds_tasks": round(sum(t["cpu_s"] for t in timings), 1), "tasks": timings,
            "interval": "hierarchical bootstrap over seeds then prompts within each seed, expanded percentiles "
                        f"(tifkit.stats), {params.run.n_bootstrap} replicates, 95%"}
    manifest = write_manifest(figures_dir / f"{params.run.name}_provenance.json", prov, written, info)
    atomic_write_text(out_dir / "batch.json", json.dumps({**prov, **info}, indent=1, default=str))
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        cols = [c for c in summary.columns if not c.endswith("_per_seed")]
        print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    say(f"summary: {out_dir / 'summary.csv'}; figures and provenance: {manifest}; {time.time() - t0:.0f} s "
        f"({workers} workers)")
    return summary
