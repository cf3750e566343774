"""Pearson(IRM, IF) per seed under each IF measurement (score.if_measure), and under the default
measurement with D_val split by the warm-up model's own margin h_v: the numbers of docs/SCORES.md,
"What IF measures".

    .venv/bin/python bench/if_measurements.py params/tiny.yaml            # seeds of run.seeds
    .venv/bin/python bench/if_measurements.py params/tiny.yaml --seeds 0 1 2 --set run.root=runs

Every score table comes from the kit's cached pipeline (`tifkit score params/tiny.yaml --seed S
--set score.if_measure=M` is what it runs when a table is missing: SFT, warm-up and validation
models about a minute per seed on one core, then scoring). The split rows score IF against the mean
validation-loss gradient of the validation pairs with h_v > 0 (the warm-up model ranks them
correctly) or h_v < 0 only (`influence.validation_gradient` on that subset, `batched_influence`).
Also per measurement: Pearson(LossDiff, IF), the overlap of the LossDiff-IRM, LossDiff and IRM
selections with TIF (the middle score.tif_keep of that IF), and IF's AUROC for the mislabelled pairs.
Prints a Markdown table; not a test.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

MEASURES = ("val_loss", "val_margin", "unweighted")


def split_if(ctx, table: pd.DataFrame) -> dict:
    """IF against g_val of the validation pairs with h_v > 0, and with h_v < 0 (default measurement)."""
    from tifkit import pipeline
    from tifkit.influence import batched_influence, validation_gradient
    from tifkit.logprobs import pair_logprobs, tokenize_pairs

    p = ctx.p
    max_len = p.score.max_length if p.score.max_length is not None else p.train.max_length
    policy = pipeline.load_stage(ctx, pipeline.warmup_stage(ctx), trainable=True)
    ref = pipeline.reference(ctx)
    obj = ctx.objective.with_measure("val_loss")  # the default measurement, on subsets of D_val
    train_tok = tokenize_pairs(ctx.tokenizer, ctx.train, max_len)
    val_tok = tokenize_pairs(ctx.tokenizer, ctx.val, max_len)
    kw = dict(batch_size=p.score.batch_size, reduction=p.score.reduction, show_progress=False)
    rv, rt = pair_logprobs(ref, val_tok, **kw), pair_logprobs(ref, train_tok, **kw)
    pv = pair_logprobs(policy, val_tok, **kw)
    h_v = p.train.beta * ((pv[0] - rv[0]) - (pv[1] - rv[1]))
    out = {}
    for label, mask in (("h_v > 0", h_v > 0), ("h_v < 0", h_v < 0)):
        idx = np.flatnonzero(mask)
        sub = val_tok.subset(idx)
        g = validation_gradient(policy, sub, (rv[0][idx], rv[1][idx]), obj, None, p.score.reduction,
                                p.score.batch_size)
        IF = batched_influence(policy, train_tok, rt, g, obj, None, p.score.reduction, p.score.batch_size,
                               verify=False, show_progress=False)
        out[label] = (float(np.corrcoef(table["irm"], IF)[0, 1]), len(idx))
    return out


def overlaps(table: pd.DataFrame, params) -> dict:
    """|A n TIF| / min(|A|, |TIF|) of each proxy rule's selection at select.keep (as docs/SCORES.md)."""
    import dataclasses

    from tifkit.select import select

    tif = table["tif"].to_numpy()
    out = {}
    for rule in ("lossdiff-irm", "lossdiff", "irm"):
        keep = select(table, dataclasses.replace(params.select, rule=rule)).mask
        out[rule] = float((keep & tif).sum() / min(keep.sum(), tif.sum()))
    return out


def main(argv=None):
    from tifkit import pipeline
    from tifkit.config import load_params
    from tifkit.report import auroc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--set", action="append", default=[], dest="sets", help="section.key=value (repeatable)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = load_params(args.params, overrides=list(args.sets))
    seeds = args.seeds if args.seeds is not None else base.run.seeds
    rows = {}
    for seed in seeds:
        for m in MEASURES:
            params = load_params(args.params, overrides=args.sets + [f"score.if_measure={m}"])
            ctx = pipeline.prepare(params, seed)
            table = pd.read_parquet(pipeline.score_stage(ctx))
            rows.setdefault(f"{m}: Pearson(IRM, IF)", []).append(float(np.corrcoef(table["irm"], table["if"])[0, 1]))
            rows.setdefault(f"{m}: Pearson(LossDiff, IF)", []).append(float(np.corrcoef(table["lossdiff"], table["if"])[0, 1]))
            for rule, r in overlaps(table, params).items():
                rows.setdefault(f"{m}: overlap of {rule} with TIF", []).append(r)
            if "gt_flipped" in table:
                rows.setdefault(f"{m}: AUROC of IF for mislabelled pairs", []).append(auroc(table["if"], table["gt_flipped"]))
            if m == "val_loss":
                for label, (r, k) in split_if(ctx, table).items():
                    rows.setdefault(f"val_loss, D_val with {label} only: Pearson(IRM, IF)", []).append(r)
                    rows.setdefault(f"  (pairs with {label})", []).append(k)
        print(f"seed {seed} done", flush=True)
    print(f"\n| IF measurement: statistic | {' | '.join(f'seed {s}' for s in seeds)} | mean |")
    print("|---|" + "---|" * (len(seeds) + 1))
    for name, vals in rows.items():
        if name.startswith("  "):
            print(f"| {name.strip()} | {' | '.join(str(v) for v in vals)} | |")
        else:
            print(f"| {name} | {' | '.join(f'{v:+.3f}' for v in vals)} | {np.mean(vals):+.3f} |")


if __name__ == "__main__":
    main()
