"""The family grid: every tiny family x both objectives x the headline rules, as the paper's main table.

For each tiny family (llama, qwen, pythia, gpt2: ``params/tiny.yaml``, ``params/tiny-<family>.yaml``)
and each objective (``train.objective`` dpo and slic), every rule the registry flags ``headline``
(tifkit.rules: full, oracle, random, top-if, tif, lossdiff, irm, lossdiff-irm) is trained and
evaluated over the default batch's seeds (``run.seeds`` of the params file) through the batch's cached
stages (tifkit.batch's worker tasks), in ONE worker pool for the whole grid, so every core stays busy
until the last task. A (variant, seed)'s first task trains its SFT, warm-up, validation model and
scores and its first rule; its other rules follow as separate tasks.

Per variant (family, objective) it writes under ``figures/``, like the batch:
``grid-<family>-<objective>_summary.csv`` (tifkit.batch.summarize: WinRate vs SFT and the paired
differences against full data and random selection, hierarchical intervals, per seed),
``grid-<family>-<objective>_comparisons.csv`` (every pair of rules, tifkit.results.comparisons) and
``grid-<family>-<objective>_provenance.json`` (commit, source hash, parameters, sha256 of both CSVs,
seeds, rules, per-task wall and CPU seconds), which ``tifkit.results.check_provenance`` checks. The
README's family-grid table is generated from them by ``python -m tifkit.results``.

Command line (``make families`` runs it, then ``python -m tifkit.results``)::

    python -m tifkit.family_grid                        # 4 families x 2 objectives x run.seeds
    python -m tifkit.family_grid --seeds 0 1 --families llama qwen --objectives dpo
    python -m tifkit.family_grid --set world.n_train=96 --set run.root=runs/toy --figures /tmp/fig
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from tifkit import TifkitError
from tifkit.batch import run_rule_tasks, summarize
from tifkit.config import load_params
from tifkit.io import atomic_write_text, write_parquet
from tifkit.results import comparisons, grid_table, provenance, source_hash, stamp_frame, write_manifest
from tifkit.rules import get_rule, headline_rules as registry_headline_rules
from tifkit.workers import init_quiet_worker, n_workers, quiet_params

FAMILY_FILES = {"llama": "tiny.yaml", "qwen": "tiny-qwen.yaml", "pythia": "tiny-pythia.yaml", "gpt2": "tiny-gpt2.yaml"}
OBJECTIVES = ("dpo", "slic")
PREFIX = "grid"  # result files: figures/grid-<family>-<objective>_*

# What the grid's results depend on: this module and every tifkit module it imports (results.provenance)
SOURCE_ROOTS = ("tifkit.family_grid",)


def stem(family: str, objective: str) -> str:
    """The result files' name for one variant: ``grid-<family>-<objective>``."""
    return f"{PREFIX}-{family}-{objective}"


def headline_rules() -> list[str]:
    """The rules the grid runs: those the registry flags `headline`, in registration order."""
    return list(registry_headline_rules())


def grid_params(families=tuple(FAMILY_FILES), objectives=OBJECTIVES, overrides=()) -> dict:
    """{(family, objective): Params}: each family's params file with `train.objective` set, then the
    `overrides` ("key=value" strings, as `tifkit batch --set`)."""
    out = {}
    for fam in families:
        if fam not in FAMILY_FILES:
            raise TifkitError(f"Unknown tiny family {fam!r} for the family grid; use one of {', '.join(FAMILY_FILES)}.")
        for obj in objectives:
            if obj not in OBJECTIVES:
                raise TifkitError(f"Unknown objective {obj!r} for the family grid; use one of {', '.join(OBJECTIVES)}.")
            out[fam, obj] = load_params(FAMILY_FILES[fam], [f"train.objective={obj}", *overrides])
    if not out:
        raise TifkitError("The family grid is empty; name at least one family and one objective.")
    return out


def run_grid(variants: dict, seeds=None, rules=None, workers: int | None = None,
             figures_dir: str | Path = "figures") -> dict:
    """Train and evaluate every (variant, seed, rule) in one worker pool and write each variant's
    summary, comparisons and provenance under `figures_dir`. `variants` is {(family, objective):
    Params} (`grid_params`); `seeds` default to the first variant's run.seeds, `rules` to the headline
    rules. Returns {(family, objective): summary DataFrame}."""
    t0 = time.time()
    first = next(iter(variants.values()))
    seeds = [int(s) for s in (seeds if seeds is not None else first.run.seeds)]
    rules = [get_rule(r).name for r in (rules if rules is not None else headline_rules())]
    if not seeds or not rules:
        raise TifkitError("The family grid needs at least one seed and one rule; check --seeds and --rules.")
    figures_dir = Path(figures_dir)
    provs = {v: provenance(p, SOURCE_ROOTS) for v, p in variants.items()}  # the code that trains, before the run
    quiet = {v: quiet_params(p) for v, p in variants.items()}
    n_tasks = len(variants) * len(seeds) * len(rules)
    workers = n_workers(first, n_tasks) if workers is None else max(1, min(int(workers), n_tasks))
    print(f"[tifkit] family grid: {len(variants)} variant(s) x {len(seeds)} seed(s) x {len(rules)} rule(s) = "
          f"{n_tasks} trained models in {workers} worker process(es)", flush=True)
    rows, _, timings = run_rule_tasks(quiet, seeds, {v: rules for v in variants}, workers, "family grid",
                                      first.run.show_progress, initializer=init_quiet_worker)
    seconds = round(time.time() - t0, 1)
    changed = source_hash(roots=SOURCE_ROOTS) != next(iter(provs.values()))["source_hash"]
    if changed:
        print("[tifkit] warning: tifkit's sources changed while the grid ran (recorded: the code at its start); "
              "rerun it on settled code before committing its results.", flush=True)
    summaries = {}
    for (fam, obj), p in variants.items():
        v = (fam, obj)
        prov = dict(provs[v], sources_changed_during_run=True) if changed else provs[v]
        per_prompt = pd.concat([rows[v, s, r] for s in seeds for r in rules], ignore_index=True)
        write_parquet(per_prompt, Path(p.run.root) / f"{stem(fam, obj)}" / "per_prompt.parquet")
        summary = summarize(per_prompt, p.run.n_bootstrap, p.eval.seed)
        comp = comparisons(per_prompt, p.run.n_bootstrap, p.eval.seed)
        name = stem(fam, obj)
        written = [figures_dir / f"{name}_summary.csv", figures_dir / f"{name}_comparisons.csv"]
        atomic_write_text(written[0], stamp_frame(summary, prov).to_csv(index=False, float_format="%.4f"))
        atomic_write_text(written[1], stamp_frame(comp, prov).to_csv(index=False, float_format="%.4f"))
        info = {"family": fam, "objective": obj, "seeds": seeds, "rules": rules, "workers": workers,
                "grid_variants": [f"{f}/{o}" for f, o in variants], "seconds_grid": seconds,
                "cpu_seconds_tasks": round(sum(t["cpu_s"] for t in timings[v]), 1), "tasks": timings[v],
                "rerun": "make families (python -m tifkit.family_grid, then python -m tifkit.results)",
                "interval": "hierarchical bootstrap over seeds then prompts within each seed, expanded percentiles "
                            f"(tifkit.stats), {p.run.n_bootstrap} replicates, 95%"}
        write_manifest(figures_dir / f"{name}_provenance.json", prov, written, info)
        summaries[v] = summary
    print(f"[tifkit] family grid: {n_tasks} models, {seconds:.0f} s wall, "
          f"{sum(t['cpu_s'] for ts in timings.values() for t in ts):.0f} CPU s in tasks; files in {figures_dir}",
          flush=True)
    return summaries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tifkit.family_grid", description=__doc__.split("\n\n")[0])
    ap.add_argument("--families", nargs="+", default=list(FAMILY_FILES), help="tiny families (default: all four)")
    ap.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), help="train.objective values (default: dpo slic)")
    ap.add_argument("--seeds", nargs="+", type=int, help="seeds (default: run.seeds of the params files)")
    ap.add_argument("--rules", nargs="+", help="rules (default: the registry's headline rules)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="parameter override, repeatable")
    ap.add_argument("--workers", type=int, help="worker processes (default: run.workers, 0 = one per core)")
    ap.add_argument("--figures", default="figures", help="folder for the result files (default: figures)")
    args = ap.parse_args(argv)
    if args.workers == 1:  # the tasks run in this process: as quiet as the spawned workers are
        init_quiet_worker()
    try:
        variants = grid_params(args.families, args.objectives, args.set)
        run_grid(variants, args.seeds, args.rules, args.workers, args.figures)
        print(grid_table(args.figures))
    except TifkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
