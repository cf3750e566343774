"""Model dependence (claim 1): the same pairs scored under several families and initializations (`run.model_seed`), and the transfer of a selection across families."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from tifkit import TifkitError

from tifkit.experiments.benchmark import aligned_rule_rows, paired_rule_difference
from tifkit.pipeline import continue_stage, evaluate_stage, prepare, say, score_stage
from tifkit.select import SelectParams, select
from tifkit.stats import hierarchical_interval
from tifkit.workers import quiet_params, quiet_pool_map, worker_count


def family_tables(params_by_family: dict, seed: int | None = None) -> dict[str, pd.DataFrame]:
    """{family: score table} for the same world seed under each family's parameters. Raises when
    the families' training pairs differ (their world or data parameters must match)."""
    out, first = {}, None
    for fam, p in params_by_family.items():
        ctx = prepare(p, p.run.seed if seed is None else seed)
        cols = ["pair_id", "prompt", "chosen", "rejected"]
        if first is None:
            first = (fam, ctx.train[cols].reset_index(drop=True))
        elif not ctx.train[cols].reset_index(drop=True).equals(first[1]):
            raise TifkitError(f"Families '{first[0]}' and '{fam}' train on different pairs; give them the same "
                              "world/data parameters and seed.")
        out[fam] = pd.read_parquet(score_stage(ctx))
    return out


def init_control_params(p, seed: int, init_seeds=(100, 101)) -> dict:
    """{"<family> init <k>": Params} for the within-family control of claim 1: the same family and
    the same pairs (world seed `seed`), models initialized and trained with model seed k
    (`run.model_seed`). The regular run (model seed = the world seed, or p's own run.model_seed)
    comes first; an init seed equal to it is skipped."""
    fam = p.model.family if p.model.is_tiny else p.run.name
    base = int(seed) if p.run.model_seed is None else int(p.run.model_seed)
    out = {f"{fam} init {base}": p}
    for k in init_seeds:
        if int(k) != base:
            out[f"{fam} init {int(k)}"] = dataclasses.replace(p, run=dataclasses.replace(p.run, model_seed=int(k)))
    return out


def init_control_tables(p, seed: int, init_seeds=(100, 101), workers: int | None = None) -> dict[str, pd.DataFrame]:
    """The within-family baseline of claim 1: {"<family> init <k>": score table} of the same pairs
    (world seed `seed`) under models initialized with other seeds (`run.model_seed`; the run folders
    are tagged ``-s<seed>m<k>``, so no cached stage is mistaken for a regular run's). The runs go
    to `workers` processes (`parallel_score_tables`)."""
    jobs = {name: (q, seed) for name, q in init_control_params(p, seed, init_seeds).items()}
    return parallel_score_tables(jobs, workers)


# ------------------------------------------------------------- model dependence (claim 1)
def scores_task(p, seed: int) -> str:
    """Worker task: a run's stages and its score table; returns the table's path."""
    return str(score_stage(prepare(p, seed)))


def parallel_score_tables(jobs: dict, workers: int | None = None) -> dict:
    """{key: score table} for {key: (Params, world seed)}, each job's stages (SFT, warm-up,
    validation model, scores) in a worker process, one torch thread each (`workers` default: the
    first job's run.workers, 0 = one per core)."""
    if not jobs:
        return {}
    first = next(iter(jobs.values()))[0]
    w = worker_count(first, len(jobs), workers)
    tasks = {k: (scores_task, (quiet_params(p), int(s))) for k, (p, s) in jobs.items()}
    paths = quiet_pool_map(tasks, w, f"{len(jobs)} score table(s)", first.run.show_progress)
    return {k: pd.read_parquet(paths[k]) for k in jobs}


def check_same_pairs(tables: dict[str, pd.DataFrame]) -> None:
    """Raise unless every score table holds the same pair ids (the families scored the same world)."""
    first = None
    for name, t in tables.items():
        ids = sorted(t.pair_id.astype(str))
        if first is None:
            first = (name, ids)
        elif ids != first[1]:
            raise TifkitError(f"'{first[0]}' and '{name}' scored different pairs; give them the same world/data "
                              "parameters and seed.")


def family_score_tables(params_by_family: dict, seeds, init_seeds=(), workers: int | None = None) -> dict:
    """The score tables of claim 1, every run in parallel worker processes:
    {"families": {seed: {family: table}}, "controls": {seed: {"<first family> init <k>": table}},
    "control": the first seed's controls}: the control (the first family under the model seeds
    `init_seeds`, `init_control_params`; empty when `init_seeds` is empty) runs on every seed, so that
    claim 1 compares the families and the initializations on matched seeds."""
    seeds = [int(s) for s in seeds]
    jobs = {("fam", s, fam): (p, s) for s in seeds for fam, p in params_by_family.items()}
    fam0, p0 = next(iter(params_by_family.items()))
    controls = {s: init_control_params(p0, s, init_seeds) for s in seeds} if list(init_seeds) else {}
    for s, control in controls.items():
        for name, q in list(control.items())[1:]:  # the first is the regular run, already a family job
            jobs["ctl", s, name] = (q, s)
    tables = parallel_score_tables(jobs, workers)
    fams = {s: {fam: tables["fam", s, fam] for fam in params_by_family} for s in seeds}
    for s in seeds:
        check_same_pairs(fams[s])
    ctl = {s: {name: fams[s][fam0] if i == 0 else tables["ctl", s, name] for i, name in enumerate(control)}
           for s, control in controls.items()}
    return {"families": fams, "controls": ctl, "control": ctl.get(seeds[0], {})}


# ------------------------------------------------------------------- transfer across families
def transfer_plan(tables: dict[str, pd.DataFrame], pairs, rule: str = "lossdiff-irm", keep: float = 0.64,
                  select_params=None) -> dict:
    """The selections of the transfer study on one seed: {(target, label): pair ids}. For each
    (source, target) in `pairs`: the source family's selection by `rule` at `keep` under label
    "<rule>-<keep>-from-<source>"; for each target also its own selection (label "<rule>-<keep>",
    the batch's label, so its cached model is reused) and full data ("full")."""
    sp = dataclasses.replace(select_params or SelectParams(), rule=rule, keep=float(keep))
    own = f"{rule}-{keep:g}"
    plan: dict = {}
    for a, b in pairs:
        for fam in (a, b):
            if fam not in tables:
                raise TifkitError(f"No score table for family '{fam}'; score it before transferring its selection.")
        if a == b:
            raise TifkitError(f"Transfer pair ({a}, {b}) has the same family twice; name two different families.")
        t_a, t_b = tables[a], tables[b]
        plan.setdefault((b, "full"), tuple(sorted(t_b.pair_id.astype(str))))
        plan.setdefault((b, own), tuple(sorted(t_b.pair_id.astype(str)[select(t_b, sp).mask])))
        plan[(b, f"{own}-from-{a}")] = tuple(sorted(t_a.pair_id.astype(str)[select(t_a, sp).mask]))
    return plan


def train_ids_task(p, seed: int, label: str, ids) -> pd.DataFrame:
    """Worker task: continue from the warm-up model on the pairs `ids`, evaluate against SFT; one
    row per test prompt (the columns of tifkit.batch's per-prompt rows)."""
    ctx = prepare(p, seed)
    ids = set(ids)
    mask = ctx.train.pair_id.astype(str).isin(ids).to_numpy()
    if int(mask.sum()) != len(ids):
        raise TifkitError(f"{len(ids) - int(mask.sum())} selected pair ids are not in {p.model.family}'s training "
                          "pairs; transfer only between runs of the same world and seed.")
    res = evaluate_stage(ctx, label, continue_stage(ctx, label, mask))
    t = res.table
    say(f"seed {seed} {p.model.family} {label}: kept {int(mask.sum())}/{len(mask)}, WinRate vs SFT "
        f"{res.winrate.estimate:.3f}")
    return pd.DataFrame({"seed": seed, "rule": label, "n_kept": int(mask.sum()), "prompt_idx": np.arange(len(t)),
                         "prompt": t.prompt, "reward_policy": t.score_policy, "reward_sft": t.score_ref,
                         "verdict": t.verdict_value})


def transfer_experiment(params_by_family: dict, tables_by_seed: dict, pairs, rule: str = "lossdiff-irm",
                        keep: float = 0.64, workers: int | None = None) -> pd.DataFrame:
    """Select with family A's scores, train family B on that selection (two epochs from B's
    warm-up model, as every rule), against B's own selection and B's full data, for each
    (A, B) in `pairs` and each seed of `tables_by_seed` ({seed: {family: score table}}). Every
    training runs in a worker process. Returns per-prompt rows with columns target, source
    ("own", "full" or the source family), rule (the label), seed, prompt_idx, verdict,
    reward_policy, reward_sft, n_kept."""
    first = next(iter(params_by_family.values()))
    own = f"{rule}-{keep:g}"
    tasks, meta = {}, {}
    for s, tables in tables_by_seed.items():
        sp = params_by_family[next(iter(tables))].select
        for (b, label), ids in transfer_plan(tables, pairs, rule, keep, sp).items():
            tasks[s, b, label] = (train_ids_task, (quiet_params(params_by_family[b]), int(s), label, ids))
            meta[s, b, label] = ("full" if label == "full" else "own" if label == own
                                 else label.rsplit("-from-", 1)[1])
    w = worker_count(first, len(tasks), workers)
    res = quiet_pool_map(tasks, w, f"transfer: {len(tasks)} trainings", first.run.show_progress)
    rows = [res[k].assign(target=k[1], source=meta[k]) for k in tasks]
    return pd.concat(rows, ignore_index=True)


def transfer_summary(per_prompt: pd.DataFrame, n_bootstrap: int = 10000, seed: int = 0) -> pd.DataFrame:
    """One row per (target, source): WinRate against SFT with its hierarchical interval (seeds, then
    prompts), and the paired differences against the target's own selection ("vs_own") and its
    full data ("vs_full"), in WinRate points (x100)."""
    rows = []
    for b, g in per_prompt.groupby("target", sort=False):
        labels = dict(zip(g.source, g.rule))
        for src, label in labels.items():
            a = aligned_rule_rows(g, label)
            wr = hierarchical_interval(a.verdict.to_numpy(), a.seed.to_numpy(), n_bootstrap, seed)
            row = {"target": b, "source": src, "selection": label, "n_kept": float(a.groupby("seed").n_kept.first().mean()),
                   "winrate": wr.estimate, "winrate_lo": wr.lo, "winrate_hi": wr.hi,
                   "reward": float(a.reward_policy.mean())}
            for base in ("own", "full"):
                if base in labels and src != base:
                    d = paired_rule_difference(g, label, labels[base], "verdict", n_bootstrap, seed)
                    row.update({f"vs_{base}": 100 * d["diff"], f"vs_{base}_lo": 100 * d["lo"],
                                f"vs_{base}_hi": 100 * d["hi"]})
            rows.append(row)
    return pd.DataFrame(rows)
