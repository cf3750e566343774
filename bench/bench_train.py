"""Where a rule's training time goes: TRL's DPOTrainer around the arithmetic of the tiny model.

    .venv/bin/python bench/bench_train.py                    # seed 0 of params/tiny.yaml, writes PERFORMANCE.md
    .venv/bin/python bench/bench_train.py --root /tmp/bt --no-write --rule lossdiff-irm

The batch spends most of a (seed, rule) task in `tifkit.train.dpo_train` (py-spy, docs/PERFORMANCE.md).
This benchmark first splits one whole (seed, rule) task, as a batch worker runs it with one thread,
into its steps (rebuilding the seed's world, selecting, training, generating and judging). Then it
times one
continuation as the batch runs it (train.continue_epochs of DPO from the warm-up model, here on all of
D_tr) three ways:

1. `dpo_train` itself (TRL's DPOTrainer), split by cProfile into the trainer's construction (dataset
   tokenization), the time inside the model's forward and backward, the optimizer step, and the rest
   (collation, TRL's per-step metrics, Trainer and accelerate bookkeeping);
2. the bare arithmetic of the same steps: the same collated batches, the same two forwards (policy
   and reference through the same fused head), the same loss, backward, gradient clipping and
   AdamW step, in a plain loop (the same start weights and optimizer settings);
3. the agreement of 2 with 1: the largest difference of the logged losses and of the final weights.

It changes nothing in tifkit; it measures what a leaner training loop could save and whether it
would reproduce TRL's numbers (the committed results need the latter, step for step).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_scoring import write_section  # noqa: E402

from tifkit.config import load_params  # noqa: E402
from tifkit.pipeline import (continue_stage, core_scores, evaluate_stage, load_stage, prepare,  # noqa: E402
                             reference, reward_model_stage, score_stage, selection_mask, sft_stage, val_stage,
                             warmup_stage)
from tifkit.rules import stage_label  # noqa: E402
from tifkit.train import dpo_train  # noqa: E402


def _cum(stats: pstats.Stats, name_part: str, file_part: str = "") -> float:
    """Cumulative seconds of the functions whose name contains `name_part` (file containing `file_part`),
    counting each call tree once (the outermost matching frames only)."""
    total = 0.0
    for (file, _line, fn), (_cc, _nc, _tt, ct, callers) in stats.stats.items():
        if name_part in fn and file_part in file:
            outer = not any(name_part in cfn and file_part in cfile for (cfile, _l, cfn) in callers)
            if outer:
                total += ct
    return total


def profile_trl(ctx, pairs, epochs: float):
    """dpo_train under cProfile: (seconds, model, history, split of the seconds)."""
    p = ctx.p
    model = load_stage(ctx, warmup_stage(ctx), trainable=True)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    model, history = dpo_train(model, reference(ctx), ctx.tokenizer, pairs, p.train, epochs, seed=ctx.train_seed,
                               device="cpu", show_progress=False)
    prof.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(prof)
    split = {
        "trainer construction": _cum(st, "__init__", "dpo_trainer.py"),
        "training loop": _cum(st, "_inner_training_loop"),
        "model forward": _cum(st, "_call_impl", "torch/nn/modules/module.py"),
        "backward": _cum(st, "backward", "torch/_tensor.py"),
        "optimizer step": _cum(st, "step", "torch/optim/"),
        "gradient clipping": _cum(st, "clip_grad_norm_"),
        "dataloader": _cum(st, "__next__", "accelerate/data_loader.py"),
    }
    return wall, model, history, split


def bare_loop(ctx, pairs, epochs: float):
    """The same steps without the Trainer's loop: `dpo_train` itself builds the DPOTrainer (so the
    config, seeding and data are the batch's, not a copy), and its `train` is replaced by a plain loop
    over TRL's collated batches (its own dataloader: same order and padding), TRL's loss
    (`_compute_loss`, metrics included), backward, clipping and AdamW with the config's settings."""
    import trl

    run = {}

    class PlainLoop(trl.DPOTrainer):
        def train(self, *args, **kwargs):
            cfg, model = self.args, self.model
            loader = self.get_train_dataloader()
            batches = [[b for b in loader] for _ in range(int(round(cfg.num_train_epochs)))]  # collation not timed
            model.train()
            opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=cfg.learning_rate,
                                    betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_epsilon,
                                    weight_decay=cfg.weight_decay)
            losses = []
            t0 = time.perf_counter()
            for epoch in batches:
                for batch in epoch:
                    loss = self._compute_loss(model, batch, return_outputs=False)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    losses.append(float(loss.detach()))
            run.update(wall=time.perf_counter() - t0, losses=losses, steps=sum(len(e) for e in batches))

    trainer_class, trl.DPOTrainer = trl.DPOTrainer, PlainLoop  # dpo_train imports it from trl when called
    try:
        model, _ = dpo_train(load_stage(ctx, warmup_stage(ctx), trainable=True), reference(ctx), ctx.tokenizer,
                             pairs, ctx.p.train, epochs, seed=ctx.train_seed, device="cpu", show_progress=False)
    finally:
        trl.DPOTrainer = trainer_class
    return run["wall"], model, run["losses"], run["steps"]


def _timer(out: dict):
    def timed(name, fn, *a, **k):
        t0, c0 = time.perf_counter(), time.process_time()
        r = fn(*a, **k)
        out[name] = (time.perf_counter() - t0, time.process_time() - c0)
        return r
    return timed


def shared_stages(params, seed: int) -> dict:
    """A seed's shared stages from an empty run root, in the order the batch's first task makes them."""
    out = {}
    timed = _timer(out)
    ctx = timed("build the seed's world (prepare)", prepare, params, seed)
    timed(f"SFT ({params.sft.steps} steps)", sft_stage, ctx)
    timed("warm-up (DPO, one epoch on D_tr)", warmup_stage, ctx)
    timed("validation model (DPO on D_val)", val_stage, ctx)
    timed("reward model (rm-margin baseline)", reward_model_stage, ctx)
    timed("scores: IRM, LossDiff, exact IF, TIF", core_scores, ctx)
    timed("score table (rm margins added)", score_stage, ctx)
    return out


def rule_task(params, seed: int, rule: str) -> dict:
    """One (seed, rule) task as a batch worker runs it after the seed's shared stages (batch._rule):
    seconds of wall and CPU in each step, the continuation trained from scratch (not cached)."""
    import pandas as pd

    out = {}
    timed = _timer(out)
    ctx = timed("rebuild the seed's world (prepare)", prepare, params, seed)
    table = timed("read the score table", lambda: pd.read_parquet(score_stage(ctx)))
    mask = timed("select", selection_mask, ctx, rule, table=table)
    label = stage_label(rule, params.select.keep)
    model_dir = timed(f"train the continuation ({int(mask.sum())} pairs)", continue_stage, ctx, label, mask)
    timed("generate and judge (evaluate)", evaluate_stage, ctx, label, model_dir)
    return out


def render_steps(intro: str, steps: dict, total: str) -> str:
    wall = sum(w for w, _ in steps.values())
    cpu = sum(c for _, c in steps.values())
    lines = [intro, "", "| step | wall s | CPU s | share of wall |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {w:.2f} | {c:.2f} | {100 * w / wall:.0f}% |" for k, (w, c) in steps.items()]
    lines += [f"| {total} | {wall:.2f} | {cpu:.2f} | 100% |"]
    return "\n".join(lines)


def render(seed, n_pairs, epochs, trl_wall, split, n_steps, bare_wall, loss_diff, weight_diff, threads) -> str:
    loop = split["training loop"]
    inside = split["model forward"] + split["backward"] + split["optimizer step"] + split["gradient clipping"]
    rows = [("`dpo_train` (TRL's DPOTrainer), wall", trl_wall),
            ("  trainer construction (tokenizing the pairs)", split["trainer construction"]),
            ("  training loop", loop),
            ("    forwards (policy and reference, fused head)", split["model forward"]),
            ("    backward", split["backward"]),
            ("    AdamW step", split["optimizer step"]),
            ("    gradient clipping", split["gradient clipping"]),
            ("    dataloader (collation)", split["dataloader"]),
            ("    the rest (metrics, Trainer and accelerate bookkeeping)", max(0.0, loop - inside - split["dataloader"])),
            ("the same steps in a plain loop (TRL's loss and batches, no Trainer)", bare_wall)]
    lines = [f"Seed {seed} of `params/tiny.yaml`: one continuation as the batch trains it ({epochs:g} epochs of "
             f"DPO from the warm-up model), here on all {n_pairs} pairs of D_tr: {n_steps} optimizer steps, "
             f"{threads} torch thread(s). cProfile adds its own overhead to the first row and its split.",
             "", "| part | seconds | per step (ms) |", "|---|---:|---:|"]
    lines += [f"| {name} | {s:.2f} | {1000 * s / n_steps:.1f} |" for name, s in rows]
    lines += ["", f"The plain loop against TRL's: largest difference of the per-step losses (TRL logs the mean "
                  f"over its logging window, compared with the same means) {loss_diff:.3g}; largest difference "
                  f"of a final weight {weight_diff:.3g}.",
              "", "Reproduce: `.venv/bin/python bench/bench_train.py --threads 2` (writes this section; about a minute)."]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", default=None, help="an empty folder for the run (default: a temporary folder)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")),
                    help="torch threads of the TRL comparison (the stage and task timings use one, as batch workers do)")
    ap.add_argument("--rule", default="tif", help="the rule of the whole-task breakdown (default tif)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "PERFORMANCE.md"))
    ap.add_argument("--no-write", action="store_true", help="print the section, do not write --out")
    args = ap.parse_args(argv)
    if args.root and Path(args.root).exists() and any(Path(args.root).iterdir()):
        sys.exit(f"--root {args.root} is not empty: the timings need stages that are not cached yet")
    with tempfile.TemporaryDirectory() as tmp:
        p = load_params(ROOT / "params" / "tiny.yaml", [f"run.root={args.root or tmp}", "run.show_progress=false"])
        torch.set_num_threads(1)
        print("a seed's shared stages from an empty run root, one thread ...", flush=True)
        shared = shared_stages(p, args.seed)
        print(f"one {args.rule} task, one thread ...", flush=True)
        steps = rule_task(p, args.seed, args.rule)
        torch.set_num_threads(args.threads)
        ctx = prepare(p, args.seed)
        pairs, epochs = ctx.train, p.train.continue_epochs
        print("TRL's dpo_train under cProfile ...", flush=True)
        trl_wall, trl_model, history, split = profile_trl(ctx, pairs, epochs)
        print("the plain loop ...", flush=True)
        bare_wall, bare_model, losses, n_steps = bare_loop(ctx, pairs, epochs)
    logged = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    every = p.train.logging_steps
    loss_diff = max((abs(v - sum(losses[s - every:s]) / every) for s, v in logged if s >= every), default=float("nan"))
    weight_diff = max(float((a.detach() - b.detach()).abs().max())
                      for a, b in zip(trl_model.parameters(), bare_model.parameters()))
    head = render_steps(f"A seed's shared stages, as the batch's first task of the seed makes them (one torch "
                        f"thread, seed {args.seed}, empty run root):", shared, "the shared stages")
    task = render_steps(f"One more (seed, rule) task as a batch worker runs it (one torch thread; seed {args.seed}, "
                        f"rule `{args.rule}`):", steps, "the task")
    body = "\n\n".join([head, task, render(args.seed, len(pairs), epochs, trl_wall, split, n_steps, bare_wall,
                                           loss_diff, weight_diff, args.threads)])
    print(body)
    if not args.no_write:
        write_section(Path(args.out), "train", "Where a seed's and a rule's time goes (`bench/bench_train.py`)", body)


if __name__ == "__main__":
    main()
