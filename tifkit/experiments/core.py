"""Shared multi-stage pieces: score tables, IF-group training with D_val curves, evaluation of saved models, rules through the batch, the scoring cost."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tifkit import TifkitError
from tifkit.batch import run_seed, summarize
from tifkit.influence import influence_scores
from tifkit.io import content_hash
from tifkit.logprobs import pair_logprobs, tokenize_pairs
from tifkit.pipeline import (evaluate_stage, load_stage, prepare, reference, score_stage, train_on, val_stage,
                             warmup_stage)
from tifkit.report import group_summary, if_groups
from tifkit.rules import rule_names
from tifkit.scores import pair_lossdiff


def bench_rules() -> list[str]:
    """Every rule the benchmark trains (oracle: the world's ground truth, an upper reference): the rule
    registry's rules (tifkit.rules) in registration order, read when called, so a rule registered
    after import is among them."""
    return list(rule_names())


def score_tables(p, seeds) -> dict[int, pd.DataFrame]:
    """{seed: score table} through the pipeline's cached stages (SFT, warm-up, val, scores)."""
    out = {}
    for s in seeds:
        ctx = prepare(p, s)
        out[s] = pd.read_parquet(score_stage(ctx))
    return out


def validation_metrics(ctx, model_dir, pairs: pd.DataFrame | None = None) -> dict:
    """Mean preference loss and mean implicit reward margin h of a saved stage on `pairs` (default
    D_val), tokenized as TRL does: the numbers DPOTrainer logs as eval_loss and
    eval_rewards/margins."""
    p = ctx.p
    pairs = ctx.val if pairs is None else pairs
    tok = tokenize_pairs(ctx.tokenizer, pairs, p.train.max_length)
    model = load_stage(ctx, Path(model_dir), trainable=False)
    pc, pr = pair_logprobs(model, tok, batch_size=p.score.batch_size, show_progress=False)
    rc, rr = pair_logprobs(reference(ctx), tok, batch_size=p.score.batch_size, show_progress=False)
    obj = ctx.objective
    loss, margin = obj.pair_loss(pc, pr, rc, rr), obj.irm(pc, pr, rc, rr)
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
    pair ids and the schedule, and the training seed when run.model_seed is set; the run folder
    already keys the training parameters), so a rerun trains nothing. Each group trains through
    tifkit.pipeline.train_on (seed ctx.train_seed), the path of every pipeline stage: a group's model
    equals the continuation the pipeline trains on the same pairs.
    """
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
        what = {"ids": sorted(pairs.pair_id.astype(str)), "epochs": epochs, "eval_steps": every,
                "train": dataclasses.asdict(p.train)}
        if ctx.model_seed is not None:  # trained with ctx.train_seed since issue 14 (before: the world seed)
            what["train_seed"] = ctx.train_seed
        out = ctx.run_dir / "analysis" / "groups" / f"{name}-{content_hash(what, 10)}"
        train_on(ctx, pairs, out, start="warmup", epochs=epochs, eval_pairs=ctx.val, eval_steps=every,
                 name=f"group {name}", log_name="history")
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
    if keep is not None:
        p = dataclasses.replace(p, select=dataclasses.replace(p.select, keep=float(keep)))
    parts = [run_seed(p, s, list(rules)) for s in seeds]
    parts = [x[0] if isinstance(x, tuple) else x for x in parts]  # (per-prompt rows, score table) or rows
    per_prompt = pd.concat(parts, ignore_index=True)
    return {"per_prompt": per_prompt, "summary": summarize(per_prompt)}


def scoring_cost(ctx, n_pairs: int = 64, methods=("lossdiff-irm", "if-batched", "if-loop"),
                 batch_size: int | None = None, return_scores: bool = False):
    """Wall time of scoring the first `n_pairs` training pairs at the warm-up model.

    - ``lossdiff-irm``: log-probs under the policy, the reference and the validation model (three
      forward passes), then the arithmetic of IRM and LossDiff;
    - ``if-batched`` / ``if-loop``: exact IF (tifkit.influence.influence_scores), reference log-probs
      and the validation gradient included.

    Both use the run's objective (ctx.objective: train.objective, train.beta, score.if_measure) and
    score.reduction, as scoring does. Columns: method, seconds, pairs_per_s, vs_lossdiff_irm (time
    relative to LossDiff-IRM), seconds_full (extrapolated to all of D_tr). Needs the warm-up and
    validation stages (trains them when missing). Timings on a shared machine vary; run twice and
    read the second. With `return_scores`: (that table, {method: what it computed}: (irm, lossdiff)
    for lossdiff-irm, the IF array for the IF methods))."""
    p = ctx.p
    bs = batch_size or p.score.batch_size
    obj, red = ctx.objective, p.score.reduction
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
            pc, pr = pair_logprobs(policy, tok, batch_size=bs, reduction=red, show_progress=False)
            rc, rr = pair_logprobs(ref, tok, batch_size=bs, reduction=red, show_progress=False)
            vc, vr = pair_logprobs(val_model, tok, batch_size=bs, reduction=red, show_progress=False)
            irm = obj.irm(pc, pr, rc, rr)
            ld = pair_lossdiff(obj, (pc, pr), (vc, vr), (rc, rr))[2]
            results[method] = (irm, ld)
        elif method in ("if-batched", "if-loop"):
            results[method] = influence_scores(policy, ref, tok, val_tok, objective=obj, reduction=red,
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
    return (df, results) if return_scores else df
