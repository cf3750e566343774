"""Multi-stage studies the notebooks and the batch share: each trains, scores and evaluates through
the pipeline's cached stages (tifkit.pipeline), so a rerun trains nothing.

- `score_tables`: {seed: score table};
- IF groups (claim 2): `train_on_groups` (continuation on each group with D_val curves),
  `validation_metrics`, `evaluate_models`, `group_experiment`;
- subsets trained in worker processes (claims 2, 3): `subset_experiment` over `group_specs` (IF
  thirds), `band_specs` (TIF bands of fixed width at moving centres: `band_sweep`, `band_mask`) and
  rule specs, with D_val curves and WinRates;
- rules (claims 3, 6): `rules_experiment` (tifkit.batch.run_seed per seed);
- model dependence (claim 1): `family_tables`, `init_control_tables` (other `run.model_seed`s),
  `family_score_tables` (every family and the control in worker processes), and the transfer across
  families: `transfer_plan`, `transfer_experiment`, `transfer_summary`;
- benchmark (claim 6): `run_variants` (families x objectives x seeds x rules in worker processes),
  `benchmark_summary` (WinRate and SingleScore with hierarchical intervals), `paired_rule_difference`;
- cost (claim 7): `scoring_cost`;
- the decisions the paper leaves open (claims 3-6, notebook 06): `decision_sweep` (settings in
  worker processes), `decision_settings`, `decision_statistics`, `decision_claims`, `rank_decisions`,
  `decision_robustness`.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tifkit import TifkitError
from tifkit.influence import dpo_loss_per_pair, implicit_reward_margin
from tifkit.io import content_hash
from tifkit.train import LOSS_TYPES

# Every rule the benchmark trains (oracle: the world's ground truth, an upper reference).
BENCH_RULES = ("full", "oracle", "random", "top-if", "tif", "lossdiff", "irm", "lossdiff-irm", "rm-margin",
               "annotation-gap")


def score_tables(p, seeds) -> dict[int, pd.DataFrame]:
    """{seed: score table} through the pipeline's cached stages (SFT, warm-up, val, scores)."""
    from tifkit.pipeline import prepare, score_stage

    out = {}
    for s in seeds:
        ctx = prepare(p, s)
        out[s] = pd.read_parquet(score_stage(ctx))
    return out


def validation_metrics(ctx, model_dir, pairs: pd.DataFrame | None = None) -> dict:
    """Mean preference loss and mean implicit reward margin h of a saved stage on `pairs` (default
    D_val), tokenized as TRL does: the numbers DPOTrainer logs as eval_loss and
    eval_rewards/margins."""
    from tifkit.logprobs import pair_logprobs, tokenize_pairs
    from tifkit.pipeline import load_stage, reference

    p = ctx.p
    pairs = ctx.val if pairs is None else pairs
    tok = tokenize_pairs(ctx.tokenizer, pairs, p.train.max_length)
    model = load_stage(ctx, Path(model_dir), trainable=False)
    pc, pr = pair_logprobs(model, tok, batch_size=p.score.batch_size, show_progress=False)
    rc, rr = pair_logprobs(reference(ctx), tok, batch_size=p.score.batch_size, show_progress=False)
    loss = dpo_loss_per_pair(pc, pr, rc, rr, p.train.beta, LOSS_TYPES[p.train.objective])
    margin = implicit_reward_margin(pc, pr, rc, rr, p.train.beta)
    # DPOTrainer's eval_loss is the per-pair mean; its reward metrics are means of per-batch means
    # over consecutive batches of train.batch_size pairs: averaged the same way here.
    batches = [slice(i, i + p.train.batch_size) for i in range(0, len(margin), p.train.batch_size)]
    return {"val_loss": float(np.mean(loss)),
            "val_margin": float(np.mean([margin[b].mean() for b in batches])),
            "val_accuracy": float(np.mean([(margin[b] > 0).mean() for b in batches]))}


@dataclass
class GroupTraining:
    """What `train_on_groups` returns.

    curves: one row per (group, evaluation): group, step, epoch, val_loss, val_margin, val_accuracy
        (step 0 is the warm-up model, the common start).
    model_dirs: {group: folder of the trained model} (save_pretrained; evaluate with evaluate_stage).
    labels: {group: label} unique per (group selection, schedule), for evaluate_stage's caches.
    """

    curves: pd.DataFrame
    model_dirs: dict[str, Path]
    labels: dict[str, str] = field(default_factory=dict)


def train_on_groups(ctx, groups: dict[str, np.ndarray], epochs: float | None = None, eval_steps: int | None = None,
                    n_points: int = 12) -> GroupTraining:
    """Continue DPO/SLiC from the warm-up model on each group's pairs, logging the loss and reward
    margin on D_val every `eval_steps` optimizer steps (default: about `n_points` points per curve).

    `epochs` defaults to train.continue_epochs (the schedule every selection gets). Each group's
    model and history are cached under ``<run_dir>/analysis/groups/<group>-<key>`` (key: the group's
    pair ids and the schedule; the run folder already keys the training parameters), so a rerun
    trains nothing.
    """
    from tifkit.pipeline import load_stage, reference, say, warmup_stage
    from tifkit.train import dpo_train, save_stage, stage_done

    p = ctx.p
    epochs = p.train.continue_epochs if epochs is None else float(epochs)
    warm = warmup_stage(ctx)
    start = validation_metrics(ctx, warm)
    curves, dirs, labels = [], {}, {}
    for name, mask in groups.items():
        mask = np.asarray(mask, dtype=bool)
        pairs = ctx.train[mask]
        if len(pairs) == 0:
            raise TifkitError(f"IF group '{name}' is empty; use fewer groups or more training pairs.")
        steps = int(np.ceil(len(pairs) / (p.train.batch_size * p.train.grad_accum)) * epochs)
        every = eval_steps or max(1, steps // n_points)
        key = content_hash({"ids": sorted(pairs.pair_id.astype(str)), "epochs": epochs, "eval_steps": every,
                            "train": dataclasses.asdict(p.train)}, 10)
        out = ctx.run_dir / "analysis" / "groups" / f"{name}-{key}"
        if not stage_done(out) or not (out / "history.parquet").exists():
            say(f"group '{name}': {len(pairs)} pairs, {epochs:g} epochs from warm-up, D_val every {every} steps -> {out}")
            model = load_stage(ctx, warm, trainable=True)
            model, hist = dpo_train(model, reference(ctx), ctx.tokenizer, pairs, p.train, epochs, seed=ctx.seed,
                                    device=str(ctx.device), show_progress=p.run.show_progress, eval_pairs=ctx.val,
                                    eval_steps=every)
            hist = pd.DataFrame([{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in hist])
            save_stage(model, ctx.tokenizer, out, extra={"history": hist})
        hist = pd.read_parquet(out / "history.parquet")
        ev = hist[hist.get("eval_loss", pd.Series(dtype=float)).notna()] if "eval_loss" in hist else hist.iloc[:0]
        c = pd.DataFrame({"group": name, "step": ev["step"].astype(int).to_numpy(), "epoch": ev["epoch"].to_numpy(),
                          "val_loss": ev["eval_loss"].to_numpy(),
                          "val_margin": ev.get("eval_rewards/margins", pd.Series(np.nan, index=ev.index)).to_numpy(),
                          "val_accuracy": ev.get("eval_rewards/accuracies", pd.Series(np.nan, index=ev.index)).to_numpy()})
        c0 = pd.DataFrame([{"group": name, "step": 0, "epoch": 0.0, **start}])
        curves.append(pd.concat([c0, c], ignore_index=True))
        dirs[name] = out
        labels[name] = f"group-{out.name}"
    return GroupTraining(pd.concat(curves, ignore_index=True), dirs, labels)


def evaluate_models(ctx, model_dirs: dict, labels: dict | None = None) -> pd.DataFrame:
    """WinRate against SFT (and mean oracle/judge reward) of saved models on the test prompts:
    one row per name with winrate, winrate_lo, winrate_hi, reward, reward_sft, and the per-prompt
    verdicts as a list (for paired comparisons)."""
    from tifkit.pipeline import evaluate_stage

    rows = []
    for name, d in model_dirs.items():
        res = evaluate_stage(ctx, (labels or {}).get(name, name), d)
        t = res.table
        rows.append({"name": name, "winrate": res.winrate.estimate, "winrate_lo": res.winrate.lo,
                     "winrate_hi": res.winrate.hi, "reward": float(t.score_policy.mean()),
                     "reward_sft": float(t.score_ref.mean()), "verdicts": t.verdict_value.to_numpy()})
    return pd.DataFrame(rows)


def group_experiment(p, seeds, n_groups: int = 3, evaluate: bool = True) -> dict:
    """Claim 2 for every seed: score, split by IF, train on each group with D_val curves, and (when
    `evaluate`) the WinRate of each group's model against SFT. Returns {"curves", "summary",
    "winrates"} DataFrames, each with a seed column."""
    from tifkit.pipeline import prepare, score_stage
    from tifkit.report import group_summary, if_groups

    curves, summaries, wins = [], [], []
    for s in seeds:
        ctx = prepare(p, s)
        table = pd.read_parquet(score_stage(ctx))
        groups = if_groups(table, n_groups)
        summaries.append(group_summary(table, groups).assign(seed=s))
        run = train_on_groups(ctx, groups)
        curves.append(run.curves.assign(seed=s))
        if evaluate:
            wins.append(evaluate_models(ctx, run.model_dirs, run.labels).assign(seed=s))
    return {"curves": pd.concat(curves, ignore_index=True), "summary": pd.concat(summaries, ignore_index=True),
            "winrates": pd.concat(wins, ignore_index=True) if wins else pd.DataFrame()}


def rules_experiment(p, seeds, rules, keep: float | None = None) -> dict:
    """Train and evaluate each rule at `keep` (default select.keep) for each seed through the
    pipeline's cached stages (tifkit.batch.run_seed). Returns {"per_prompt", "summary"}: the
    per-prompt verdicts and tifkit.batch.summarize's table (WinRate vs SFT with a bootstrap
    interval, paired difference against full data when full is among the rules)."""
    from tifkit.batch import run_seed, summarize

    if keep is not None:
        p = dataclasses.replace(p, select=dataclasses.replace(p.select, keep=float(keep)))
    parts = [run_seed(p, s, list(rules)) for s in seeds]
    parts = [x[0] if isinstance(x, tuple) else x for x in parts]  # (per-prompt rows, score table) or rows
    per_prompt = pd.concat(parts, ignore_index=True)
    return {"per_prompt": per_prompt, "summary": summarize(per_prompt)}


def family_tables(params_by_family: dict, seed: int | None = None) -> dict[str, pd.DataFrame]:
    """{family: score table} for the same world seed under each family's parameters. Raises when
    the families' training pairs differ (their world or data parameters must match)."""
    from tifkit.pipeline import prepare, score_stage

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


def scoring_cost(ctx, n_pairs: int = 64, methods=("lossdiff-irm", "if-batched", "if-loop"),
                 batch_size: int | None = None) -> pd.DataFrame:
    """Wall time of scoring the first `n_pairs` training pairs at the warm-up model.

    - ``lossdiff-irm``: log-probs under the policy, the reference and the validation model (three
      forward passes), then the arithmetic of IRM and LossDiff;
    - ``if-batched`` / ``if-loop``: exact IF (tifkit.influence.influence_scores), reference log-probs
      and the validation gradient included.

    Columns: method, seconds, pairs_per_s, vs_lossdiff_irm (time relative to LossDiff-IRM),
    seconds_full (extrapolated to all of D_tr). Needs the warm-up and validation stages (trains
    them when missing). Timings on a shared machine vary; run twice and read the second."""
    from tifkit.influence import influence_scores
    from tifkit.logprobs import pair_logprobs, tokenize_pairs
    from tifkit.pipeline import load_stage, reference, val_stage, warmup_stage

    p = ctx.p
    bs = batch_size or p.score.batch_size
    loss_type = LOSS_TYPES[p.train.objective]
    ml = p.score.max_length if p.score.max_length is not None else p.train.max_length
    sub = ctx.train.iloc[:n_pairs]
    tok = tokenize_pairs(ctx.tokenizer, sub, ml)
    val_tok = tokenize_pairs(ctx.tokenizer, ctx.val, ml)
    policy = load_stage(ctx, warmup_stage(ctx), trainable=True)
    val_model = load_stage(ctx, val_stage(ctx), trainable=False)
    ref = reference(ctx)
    rows, results = [], {}
    for method in methods:
        t0 = time.perf_counter()
        if method == "lossdiff-irm":
            pc, pr = pair_logprobs(policy, tok, batch_size=bs, show_progress=False)
            rc, rr = pair_logprobs(ref, tok, batch_size=bs, show_progress=False)
            vc, vr = pair_logprobs(val_model, tok, batch_size=bs, show_progress=False)
            irm = implicit_reward_margin(pc, pr, rc, rr, p.train.beta)
            ld = dpo_loss_per_pair(pc, pr, rc, rr, p.train.beta, loss_type) - dpo_loss_per_pair(vc, vr, rc, rr, p.train.beta, loss_type)
            results[method] = (irm, ld)
        elif method in ("if-batched", "if-loop"):
            results[method] = influence_scores(policy, ref, tok, val_tok, p.train.beta, loss_type,
                                               method=method.split("-")[1], batch_size=bs, verify=False,
                                               show_progress=False)
        else:
            raise TifkitError(f"Unknown cost method {method!r}; use lossdiff-irm, if-batched or if-loop.")
        sec = time.perf_counter() - t0
        rows.append({"method": method, "n_pairs": len(sub), "seconds": sec, "pairs_per_s": len(sub) / sec,
                     "seconds_full": sec * len(ctx.train) / len(sub)})
    df = pd.DataFrame(rows)
    if "lossdiff-irm" in set(df.method):
        df["vs_lossdiff_irm"] = df.seconds / float(df.loc[df.method == "lossdiff-irm", "seconds"].iloc[0])
    if "if-batched" in results and "if-loop" in results:
        a, b = results["if-batched"], results["if-loop"]
        df.attrs["if_max_rel_diff"] = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
    return df


# ------------------------------------------------------------------------------------------------
# Subsets trained in parallel: IF groups and the band-position sweep (claims 2 and 3)
#
# A "spec" names a subset of D_tr by how to recompute it from a seed's score table, so that worker
# processes need only (params, seed, spec): ("if-group", n_groups, name) for report.if_groups,
# ("band", width, center) for the TIF band (select rule "tif" at select.band_center = center, keep =
# width), ("rule", rule, keep) for a selection rule through the pipeline's cached continuation.


def group_specs(n_groups: int = 3) -> dict[str, tuple]:
    """{name: spec} of the IF groups ("small", "medium", "large" for three)."""
    from tifkit.report import GROUP_NAMES

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
    from tifkit.config import SelectParams
    from tifkit.select import select

    sp = dataclasses.replace(select_params or SelectParams(), rule="tif", keep=float(width),
                             band_center=float(center), tif_lo=None, tif_hi=None)
    return select(table, sp)


def band_mask(table: pd.DataFrame, width: float, center: float, select_params=None) -> np.ndarray:
    """band_selection's mask."""
    return band_selection(table, width, center, select_params).mask


def spec_mask(ctx, table: pd.DataFrame | None, spec: tuple) -> np.ndarray:
    """The boolean mask over D_tr that `spec` names (see above)."""
    from tifkit.pipeline import selection_mask
    from tifkit.report import if_groups

    kind = spec[0]
    if kind == "if-group":
        return if_groups(table, spec[1])[spec[2]]
    if kind == "band":
        return band_mask(table, spec[1], spec[2], ctx.p.select)
    if kind == "rule":
        return selection_mask(ctx, spec[1], spec[2], table=table)
    raise TifkitError(f"Unknown subset kind {kind!r}; use 'if-group', 'band' or 'rule'.")


def _subset_task(p, seed: int, name: str, spec: tuple, evaluate: bool) -> dict:
    """One subset of one seed (in a worker or in this process): train it from the warm-up model
    (with D_val curves, except "rule" subsets, which use the pipeline's cached continuation, shared
    with the batch), evaluate it against SFT. Returns {"curves", "summary", "wins", "per_prompt"}."""
    from tifkit.pipeline import continue_stage, prepare, score_stage
    from tifkit.report import group_summary

    ctx = prepare(p, seed)
    needs_scores = spec[0] != "rule" or spec[1] not in ("full", "oracle", "random")
    table = pd.read_parquet(score_stage(ctx)) if needs_scores else None
    mask = np.asarray(spec_mask(ctx, table, spec), dtype=bool)
    if spec[0] == "rule":
        label = spec[1] if spec[1] in ("full", "oracle") else f"{spec[1]}-{float(spec[2]):g}"
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
    one per core; see tifkit.batch.n_workers), spawned, one torch thread each (`_pool_map`, the
    pattern of tifkit.batch.run_seeds). Every task is deterministic and cached on its own, so the numbers do
    not depend on the number of workers.

    Returns DataFrames, each with a seed column:
    - "curves": D_val loss/margin/accuracy per evaluation step ("group" = the subset's name; step 0
      is the warm-up model); none for "rule" subsets;
    - "summary": per subset its size, IF range, mean LossDiff/IRM and share of mislabelled pairs
      (group_summary), and for bands their width, centre and percentile edges lo_pct/hi_pct;
    - "winrates": evaluate_models rows (name, winrate with interval, rewards, verdicts);
    - "per_prompt": seed, rule (= subset name), prompt_idx, verdict, for report.rule_difference.
    """
    from tifkit.pipeline import prepare, say, score_stage, sft_stage, warmup_stage

    if not specs:
        raise TifkitError("subset_experiment got no subsets; pass group_specs(), band_specs() or rule specs.")
    seeds = [int(s) for s in seeds]
    for s in seeds:  # shared stages first, in this process (workers then only read them)
        ctx = prepare(p, s)
        sft_stage(ctx)
        warmup_stage(ctx)
        if any(sp[0] != "rule" or sp[1] not in ("full", "oracle", "random") for sp in specs.values()):
            score_stage(ctx)
    tasks = {(s, name): (_subset_task, (_quiet(p), s, name, spec, evaluate)) for s in seeds for name, spec in specs.items()}
    workers = _workers(p, len(tasks), workers)
    say(f"{len(tasks)} subsets ({len(seeds)} seed(s) x {len(specs)}) in {workers} worker process(es), one torch thread each")
    done = _pool_map(tasks, workers, "subsets", p.run.show_progress)
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


# ------------------------------------------------------------------------------------------------
# Worker processes for the notebooks' multi-family studies (claims 1 and 6). The pattern is
# tifkit.batch.run_seeds': spawned processes, one torch thread each (batch._init_worker), a task
# per independent unit of work, every task deterministic on its own and cached through the
# pipeline's stages (file locks make two tasks that need the same stage wait for each other).

def _init_quiet_worker() -> None:
    """Worker set-up: one torch thread (tifkit.batch._init_worker), libraries quiet as in a notebook
    (no per-stage progress bars or warnings from transformers, datasets, TRL on the kernel's stderr)."""
    from tifkit.batch import _init_worker
    from tifkit.notebooks import notebook_setup

    notebook_setup(threads=1, chdir=False)
    _init_worker()


def _pool_map(tasks: dict, workers: int, desc: str, show_progress: bool = True, then=None) -> dict:
    """Run {key: (fn, args)} in `workers` spawned processes (in this process, on one torch thread,
    when workers == 1); returns {key: result}. `then(key, result)` may return more {key: (fn, args)}
    to submit once a task is done (a seed's shared stages first, then its rules)."""
    import torch
    from tqdm.auto import tqdm

    out: dict = {}
    bar = tqdm(total=len(tasks), desc=f"{desc} ({workers} worker{'s' * (workers > 1)})", disable=not show_progress)
    if workers <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            todo = dict(tasks)
            while todo:
                key, (fn, args) = next(iter(todo.items()))
                del todo[key]
                out[key] = fn(*args)
                more = then(key, out[key]) if then else None
                if more:
                    todo.update(more)
                    bar.total += len(more)
                bar.update()
        finally:
            torch.set_num_threads(threads)
    else:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=_init_quiet_worker) as pool:
            pending = {pool.submit(fn, *args): key for key, (fn, args) in tasks.items()}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    key = pending.pop(fut)
                    out[key] = fut.result()  # a worker's error stops here, with its message
                    more = then(key, out[key]) if then else None
                    if more:
                        pending.update({pool.submit(fn, *args): k for k, (fn, args) in more.items()})
                        bar.total += len(more)
                    bar.update()
    bar.close()
    return out


def _quiet(p):
    return dataclasses.replace(p, run=dataclasses.replace(p.run, show_progress=False))


def _workers(p, n_tasks: int, workers: int | None) -> int:
    from tifkit.batch import n_workers

    return n_workers(p, n_tasks) if workers is None else max(1, min(int(workers), n_tasks))


# -------------------------------------------------------------------------- benchmark (claim 6)
def _variant_start(p, seed: int, rules: list[str]) -> pd.DataFrame:
    """Worker task: a (variant, seed)'s shared stages (SFT, warm-up, scores when a rule needs them)
    and its first rule; the per-prompt rows of tifkit.batch."""
    from tifkit.batch import _start_seed

    return _start_seed(p, seed, rules)[2]


def _variant_rule(p, seed: int, rule: str) -> pd.DataFrame:
    """Worker task: one more rule of a (variant, seed) whose stages are done."""
    from tifkit.batch import NO_SCORES, _rule_rows
    from tifkit.pipeline import prepare, score_stage

    ctx = prepare(p, seed)
    return _rule_rows(ctx, rule, None if rule in NO_SCORES else pd.read_parquet(score_stage(ctx)))


def run_variants(variants: dict, seeds, rules, workers: int | None = None) -> pd.DataFrame:
    """Every (variant, seed, rule) of a benchmark through the batch's cached stages, in worker
    processes: first one task per (variant, seed) that trains its SFT, warm-up, validation model
    and scores and its first rule (tifkit.batch._start_seed), then one task per remaining rule
    (batch._rule_rows). `variants` is {name: Params} (for example "llama/dpo", "llama/slic");
    `rules` is one list for all, or {name: list}. `workers` defaults to the first variant's
    run.workers (0 = one per core). Returns tifkit.batch's per-prompt rows with a `variant` column,
    in variant, seed, rule order."""
    seeds = [int(s) for s in seeds]
    if not variants or not seeds:
        raise TifkitError("run_variants needs at least one variant and one seed.")
    rules_of = {v: list(rules[v] if isinstance(rules, dict) else rules) for v in variants}
    for v, rs in rules_of.items():
        if not rs:
            raise TifkitError(f"Variant '{v}' has no rules; list at least one, e.g. [full, lossdiff-irm].")
    quiet = {v: _quiet(p) for v, p in variants.items()}
    n_tasks = sum(len(rules_of[v]) for v in variants) * len(seeds)
    first = next(iter(variants.values()))
    w = _workers(first, n_tasks, workers)
    tasks = {(v, s, rules_of[v][0]): (_variant_start, (quiet[v], s, rules_of[v])) for v in variants for s in seeds}

    def then(key, result):
        v, s, r = key
        if r != rules_of[v][0]:
            return None
        return {(v, s, q): (_variant_rule, (quiet[v], s, q)) for q in rules_of[v][1:]}

    res = _pool_map(tasks, w, f"{len(variants)} variant(s) x {len(seeds)} seed(s)", first.run.show_progress, then)
    rows = []
    for v in variants:
        for s in seeds:
            for r in rules_of[v]:
                rows.append(res[v, s, r].assign(variant=v))
    return pd.concat(rows, ignore_index=True)


def _aligned(per_prompt: pd.DataFrame, rule: str) -> pd.DataFrame:
    return per_prompt[per_prompt.rule == rule].sort_values(["seed", "prompt_idx"]).reset_index(drop=True)


def paired_rule_difference(per_prompt: pd.DataFrame, a: str, b: str, column: str = "verdict",
                           n_bootstrap: int = 10000, seed: int = 0) -> dict:
    """Mean `column` of rule a minus rule b on the same prompts and seeds (WinRate with
    column="verdict", SingleScore with "reward_policy"), with tifkit.stats' hierarchical bootstrap
    interval (seeds, then prompts; with one seed, prompts only). Raises when the two rules were not
    evaluated on the same (seed, prompt) rows."""
    from tifkit.stats import paired_hierarchical_diff

    ga, gb = _aligned(per_prompt, a), _aligned(per_prompt, b)
    if len(ga) == 0 or len(gb) == 0:
        raise TifkitError(f"Rules '{a}' and '{b}' must both be in the per-prompt table to compare them.")
    if len(ga) != len(gb) or not (ga[["seed", "prompt_idx"]].to_numpy() == gb[["seed", "prompt_idx"]].to_numpy()).all():
        raise TifkitError(f"Rules '{a}' and '{b}' were evaluated on different prompts or seeds; run both on every seed.")
    d = paired_hierarchical_diff(ga[column].to_numpy(), gb[column].to_numpy(), ga.seed.to_numpy(), n_bootstrap, seed)
    return {"a": a, "b": b, "column": column, "diff": d.estimate, "lo": d.lo, "hi": d.hi,
            "n_better": d.n_better, "n_seeds": d.n_seeds, "mean_a": float(ga[column].mean()),
            "mean_b": float(gb[column].mean())}


def benchmark_summary(per_prompt: pd.DataFrame, n_bootstrap: int = 10000, seed: int = 0) -> pd.DataFrame:
    """One row per (variant, rule): tifkit.batch.summarize's WinRate against SFT and paired
    differences against full data and random selection, plus the SingleScore (mean oracle reward
    of the policy's answers, `reward_policy`) with its hierarchical interval and its paired
    difference against full data. A table without a `variant` column is one variant ("")."""
    from tifkit.batch import summarize
    from tifkit.stats import hierarchical_interval

    pp = per_prompt if "variant" in per_prompt else per_prompt.assign(variant="")
    out = []
    for v, g in pp.groupby("variant", sort=False):
        s = summarize(g.drop(columns="variant"), n_bootstrap, seed)
        ss, dv = [], []
        for rule in s.rule:
            a = _aligned(g, rule)
            iv = hierarchical_interval(a.reward_policy.to_numpy(), a.seed.to_numpy(), n_bootstrap, seed)
            ss.append((iv.estimate, iv.lo, iv.hi))
            dv.append(paired_rule_difference(g, rule, "full", "reward_policy", n_bootstrap, seed)
                      if rule != "full" and "full" in set(g.rule) else None)
        s["single_score"], s["single_score_lo"], s["single_score_hi"] = map(list, zip(*ss))
        s["single_diff_vs_full"] = [d["diff"] if d else np.nan for d in dv]
        s["single_diff_vs_full_lo"] = [d["lo"] if d else np.nan for d in dv]
        s["single_diff_vs_full_hi"] = [d["hi"] if d else np.nan for d in dv]
        out.append(s.assign(variant=v))
    cols = ["variant"]
    return pd.concat(out, ignore_index=True).pipe(lambda d: d[cols + [c for c in d.columns if c not in cols]])


# ------------------------------------------------------------- model dependence (claim 1)
def _task_scores(p, seed: int) -> str:
    """Worker task: a run's stages and its score table; returns the table's path."""
    from tifkit.pipeline import prepare, score_stage

    return str(score_stage(prepare(p, seed)))


def parallel_score_tables(jobs: dict, workers: int | None = None) -> dict:
    """{key: score table} for {key: (Params, world seed)}, each job's stages (SFT, warm-up,
    validation model, scores) in a worker process, one torch thread each (`workers` default: the
    first job's run.workers, 0 = one per core)."""
    if not jobs:
        return {}
    first = next(iter(jobs.values()))[0]
    w = _workers(first, len(jobs), workers)
    tasks = {k: (_task_scores, (_quiet(p), int(s))) for k, (p, s) in jobs.items()}
    paths = _pool_map(tasks, w, f"{len(jobs)} score table(s)", first.run.show_progress)
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
    {"families": {seed: {family: table}}, "control": {"<first family> init <k>": table}} where the
    control is the first family on the first seed under the model seeds `init_seeds`
    (`init_control_params`; empty when `init_seeds` is empty)."""
    seeds = [int(s) for s in seeds]
    jobs = {("fam", s, fam): (p, s) for s in seeds for fam, p in params_by_family.items()}
    fam0, p0 = next(iter(params_by_family.items()))
    control = init_control_params(p0, seeds[0], init_seeds) if list(init_seeds) else {}
    for name, q in list(control.items())[1:]:  # the first is the regular run, already a family job
        jobs["ctl", seeds[0], name] = (q, seeds[0])
    tables = parallel_score_tables(jobs, workers)
    fams = {s: {fam: tables["fam", s, fam] for fam in params_by_family} for s in seeds}
    for s in seeds:
        check_same_pairs(fams[s])
    ctl = {}
    for i, name in enumerate(control):
        ctl[name] = fams[seeds[0]][fam0] if i == 0 else tables["ctl", seeds[0], name]
    return {"families": fams, "control": ctl}


# ------------------------------------------------------------------- transfer across families
def transfer_plan(tables: dict[str, pd.DataFrame], pairs, rule: str = "lossdiff-irm", keep: float = 0.64,
                  select_params=None) -> dict:
    """The selections of the transfer study on one seed: {(target, label): pair ids}. For each
    (source, target) in `pairs`: the source family's selection by `rule` at `keep` under label
    "<rule>-<keep>-from-<source>"; for each target also its own selection (label "<rule>-<keep>",
    the batch's label, so its cached model is reused) and full data ("full")."""
    from tifkit.select import SelectParams, select

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


def _task_train_ids(p, seed: int, label: str, ids) -> pd.DataFrame:
    """Worker task: continue from the warm-up model on the pairs `ids`, evaluate against SFT; one
    row per test prompt (the columns of tifkit.batch's per-prompt rows)."""
    from tifkit.pipeline import continue_stage, evaluate_stage, prepare, say

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
            tasks[s, b, label] = (_task_train_ids, (_quiet(params_by_family[b]), int(s), label, ids))
            meta[s, b, label] = ("full" if label == "full" else "own" if label == own
                                 else label.rsplit("-from-", 1)[1])
    w = _workers(first, len(tasks), workers)
    res = _pool_map(tasks, w, f"transfer: {len(tasks)} trainings", first.run.show_progress)
    rows = [res[k].assign(target=k[1], source=meta[k]) for k in tasks]
    return pd.concat(rows, ignore_index=True)


def transfer_summary(per_prompt: pd.DataFrame, n_bootstrap: int = 10000, seed: int = 0) -> pd.DataFrame:
    """One row per (target, source): WinRate against SFT with its hierarchical interval (seeds, then
    prompts), and the paired differences against the target's own selection ("vs_own") and its
    full data ("vs_full"), in WinRate points (x100)."""
    from tifkit.stats import hierarchical_interval

    rows = []
    for b, g in per_prompt.groupby("target", sort=False):
        labels = dict(zip(g.source, g.rule))
        for src, label in labels.items():
            a = _aligned(g, label)
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
    from tifkit.config import SelectParams
    from tifkit.report import report_value, score_report

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


def _core_table_path(p, seed: int) -> str:
    """Worker task: a run's SFT, warm-up and validation models and its core score table (IRM,
    LossDiff, IF, TIF; no reward-model margin, which this sweep does not use and which would train
    a reward model per run folder). Same file and key as tifkit.pipeline.score_stage's core table."""
    from tifkit.pipeline import _score_core, prepare

    ctx = prepare(p, seed)
    key = content_hash({"score": dataclasses.asdict(p.score), "beta": p.train.beta, "obj": p.train.objective}, 10)
    return str(_score_core(ctx, key))


def _settings_order(settings: list[dict]) -> list[dict]:
    """Default first, then the settings that build another world (their own SFT model), then the
    rest: two workers rarely wait on one SFT model's file lock."""
    return sorted(settings, key=lambda s: (s["setting"] != "default", not s["parameter"].startswith("world.")))


def t_interval(values, ci: float = 0.95) -> tuple[float, float, float]:
    """Mean of `values` (one per seed; NaNs dropped) with a Student-t interval; (mean, nan, nan)
    for a single value."""
    from scipy import stats as st

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    h = float(st.t.ppf(0.5 + ci / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - h, m + h


def _verdict(est: float, lo: float, hi: float, null: float) -> str:
    """holds / fails / unclear from an interval (from the point estimate when there is none)."""
    if not np.isfinite(est):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "holds" if est > null else "fails"
    return "holds" if lo > null else "fails" if hi < null else "unclear"


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
    null, verdict (holds / fails / unclear).

    `stats`: one row per (setting, seed) with columns setting, decision, seed and
    decision_statistics' keys; the score-based claims get a t-interval over the seeds (none with one
    seed: the verdict then reads the point estimate). `per_prompt`: rows with setting, seed, rule,
    prompt_idx, verdict for full, tif-* and lossdiff-irm-*; the WinRate claims get the paired
    hierarchical bootstrap over seeds then prompts (paired_rule_difference)."""
    import json

    rows = []
    decision_of = dict(zip(stats.setting, stats.decision))
    for setting, g in stats.groupby("setting", sort=False):
        g = g.sort_values("seed")
        per = [claim_statistics(r) for r in g.to_dict("records")]
        for key in next(iter(per)):
            vals = [x[key] for x in per]
            est, lo, hi = t_interval(vals)
            null = DECISION_CLAIMS[key][1]
            rows.append({"claim": key, "label": DECISION_CLAIMS[key][0], "setting": setting,
                         "decision": decision_of[setting], "estimate": est, "lo": lo, "hi": hi,
                         "per_seed": json.dumps({str(s): round(float(v), 4) for s, v in zip(g.seed, vals)}),
                         "n_seeds": int(np.isfinite(vals).sum()), "null": null, "verdict": _verdict(est, lo, hi, null)})
    if per_prompt is not None and len(per_prompt):
        for setting, g in per_prompt.groupby("setting", sort=False):
            rules = set(g.rule)
            for key, prefix in WINRATE_CLAIMS.items():
                label = next((r for r in sorted(rules) if r == prefix or r.startswith(prefix + "-")), None)
                if label is None or "full" not in rules:
                    continue
                d = paired_rule_difference(g, label, "full", "verdict", n_bootstrap, seed)
                per_seed = (g[g.rule == label].groupby("seed").verdict.mean()
                            - g[g.rule == "full"].groupby("seed").verdict.mean())
                rows.append({"claim": key, "label": DECISION_CLAIMS[key][0], "setting": setting,
                             "decision": decision_of.get(setting, setting), "estimate": d["diff"], "lo": d["lo"],
                             "hi": d["hi"], "per_seed": json.dumps({str(s): round(float(v), 4)
                                                                    for s, v in per_seed.items()}),
                             "n_seeds": d["n_seeds"], "null": 0.0, "verdict": _verdict(d["diff"], d["lo"], d["hi"], 0.0)})
    return pd.DataFrame(rows)


def decision_robustness(claims: pd.DataFrame) -> pd.DataFrame:
    """Per claim: its verdict at the default, the settings whose verdict differs, and a status:
    "robust" (every setting tried gives the default's verdict, holds or fails; "unclear under every
    setting" when that verdict is unclear), "hinges on <decision>" (only that
    decision's settings change it), "hinges on several decisions: ..." otherwise, "default only (not
    varied)" when no other setting measured it. Also
    holds_under: the settings under which it holds, and n_settings."""
    rows = []
    for claim, g in claims.groupby("claim", sort=False):
        base = g[g.setting == "default"]
        if base.empty:
            continue
        v0 = base.verdict.iloc[0]
        other = g[g.setting != "default"]
        differ = other[other.verdict != v0]
        decisions = list(dict.fromkeys(differ.decision))
        status = ("default only (not varied)" if other.empty
                  else ("robust" if v0 in ("holds", "fails") else f"{v0} under every setting") if not decisions
                  else f"hinges on {decisions[0]}" if len(decisions) == 1
                  else "hinges on several decisions: " + ", ".join(decisions))
        holds = g[g.verdict == "holds"].setting.tolist()
        rows.append({"claim": claim, "label": g.label.iloc[0], "default_verdict": v0,
                     "default_estimate": float(base.estimate.iloc[0]), "n_settings": len(g), "status": status,
                     "differs_under": ", ".join(f"{s} ({v})" for s, v in zip(differ.setting, differ.verdict)),
                     "holds_under": ", ".join(holds)})
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
    from tifkit.select import select

    t0 = time.time()
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise TifkitError("decision_sweep needs at least one seed.")
    settings = decision_settings(p, decisions)
    params = {s["setting"]: setting_params(p, s["parameter"], s["value"]) for s in settings}
    order = _settings_order(settings)
    tasks = {(s["setting"], seed): (_core_table_path, (_quiet(params[s["setting"]]), seed))
             for s in order for seed in seeds}
    paths = _pool_map(tasks, _workers(p, len(tasks), workers), f"open decisions: {len(tasks)} score tables",
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
        labels = {"full": "full", "tif": f"tif-{keep:g}", "lossdiff-irm": f"lossdiff-irm-{keep:g}"}
        wtasks, same = {}, {}  # same: (setting, seed, label) -> the task that trains the identical model
        for name in chosen:
            q = params[name]
            d = q.to_dict()
            trained = content_hash({k: d[k] for k in ("world", "data", "model", "sft", "train", "run")})
            for seed in seeds:
                table = pd.read_parquet(paths[name, seed])
                for rule, label in labels.items():
                    ids = (table.pair_id.astype(str) if rule == "full" else table.pair_id.astype(str)[
                        select(table, dataclasses.replace(q.select, rule=rule)).mask])
                    ids = tuple(sorted(ids))
                    model = (trained, seed, label, content_hash(ids))
                    same[name, seed, label] = model
                    if model not in wtasks:
                        wtasks[model] = (_task_train_ids, (_quiet(q), seed, label, ids))
        res = _pool_map(wtasks, _workers(p, len(wtasks), workers), f"open decisions: {len(wtasks)} trainings",
                        p.run.show_progress)
        per_prompt = pd.concat([res[m].assign(setting=k[0]) for k, m in same.items()], ignore_index=True)
        claims = decision_claims(stats, per_prompt, p.run.n_bootstrap, p.eval.seed)
    return {"settings": pd.DataFrame(settings), "tables": paths, "stats": stats, "claims": claims, "ranking": ranking,
            "winrate_settings": chosen, "per_prompt": per_prompt, "robustness": decision_robustness(claims),
            "seconds": round(time.time() - t0, 1)}
