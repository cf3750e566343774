"""Pearson(IRM, IF) per seed under each IF measurement (score.if_measure), and under the default
measurement with D_val split by the warm-up model's own margin h_v: the tables of docs/SCORES.md,
"What IF measures".

    .venv/bin/python bench/if_measurements.py params/tiny.yaml --write   # seeds of run.seeds (25)
    .venv/bin/python bench/if_measurements.py params/tiny.yaml --seeds 0 1 2 --set run.root=runs

Every score table comes from the kit's cached pipeline (`tifkit score params/tiny.yaml --seed S
--set score.if_measure=M` is what it runs when a table is missing: SFT, warm-up and validation
models about a minute per seed on one core, then scoring), one seed per task in the kit's worker pool
(`run.workers`; 0 = one per core). The split rows score IF against the mean validation-loss gradient
of the validation pairs with h_v > 0 (the warm-up model ranks them correctly) or h_v < 0 only
(`influence.validation_gradient` on that subset, `batched_influence`). Also per measurement:
Pearson(LossDiff, IF), the overlap of the LossDiff-IRM, LossDiff and IRM selections with TIF (the
middle score.tif_keep of that IF), and IF's AUROC for the mislabelled pairs.

Prints the tables. With --write (the default parameters only) it also writes
figures/if_measurements.csv (one row per seed, measurement and statistic, with the provenance columns),
its manifest figures/if_measurements_provenance.json (checked by tests/test_batch.py like the batch's:
a change to the code it runs makes it stale) and the generated block of docs/SCORES.md; a test checks
that the block is what `render` makes of the CSV. Not a test itself.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

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
        g = validation_gradient(policy, sub, (rv[0][idx], rv[1][idx]), obj, p.score.reduction, p.score.batch_size)
        IF = batched_influence(policy, train_tok, rt, g, obj, p.score.reduction, p.score.batch_size,
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


ROOTS = ["tifkit.pipeline", "tifkit.report", "tifkit.select", "tifkit.influence", "tifkit.logprobs"]
CSV = ROOT / "figures" / "if_measurements.csv"
MANIFEST = ROOT / "figures" / "if_measurements_provenance.json"
DOC = ROOT / "docs" / "SCORES.md"
BLOCK = re.compile(r"<!-- bench:if-measurements -->.*?<!-- /bench:if-measurements -->", re.S)
RERUN = ".venv/bin/python bench/if_measurements.py params/tiny.yaml --write"


def code_hash(path: Path = Path(__file__)) -> str:
    """sha256 (16 hex digits) of this script's code without docstrings and comments (the manifest records
    it beside the tifkit modules' source hash, so an edit of the computation here stales the result and
    a prose edit does not)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def one_seed(params_file: str, sets: list, seed: int) -> list[tuple]:
    """[(seed, measure, statistic, value)] of one seed (a worker task)."""
    from tifkit import pipeline
    from tifkit.config import load_params
    from tifkit.report import auroc

    out = []
    for m in MEASURES:
        params = load_params(params_file, overrides=list(sets) + [f"score.if_measure={m}"])
        ctx = pipeline.prepare(params, seed)
        table = pd.read_parquet(pipeline.score_stage(ctx))
        out.append((seed, m, "pearson_irm_if", float(np.corrcoef(table["irm"], table["if"])[0, 1])))
        out.append((seed, m, "pearson_lossdiff_if", float(np.corrcoef(table["lossdiff"], table["if"])[0, 1])))
        for rule, r in overlaps(table, params).items():
            out.append((seed, m, f"overlap_{rule}", r))
        if "gt_flipped" in table:
            out.append((seed, m, "auroc_if_flipped", float(auroc(table["if"], table["gt_flipped"]))))
        if m == "val_loss":
            for label, (r, k) in split_if(ctx, table).items():
                tag = "pos" if ">" in label else "neg"
                out.append((seed, m, f"pearson_irm_if_hv_{tag}", r))
                out.append((seed, m, f"n_val_hv_{tag}", float(k)))
            out.append((seed, m, "n_val", float(len(ctx.val))))
    return out


def _ms(v: np.ndarray, fmt: str = "{:+.3f}") -> str:
    return f"{fmt.format(np.mean(v))} ({np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f})"


def render(df: pd.DataFrame) -> str:
    """The Markdown of docs/SCORES.md's generated block, from the long table (seed, measure, statistic, value)."""
    def vals(m, stat):
        return df[(df.measure == m) & (df.statistic == stat)].sort_values("seed").value.to_numpy()

    seeds = sorted(df.seed.unique())
    n = len(seeds)
    head = ["| statistic: mean (sd) over seeds | `val_loss` (default) | `val_margin` | `unweighted` |",
            "|---|---|---|---|"]
    rows = []

    def row(name, stat, fmt="{:+.3f}", positive=False):
        cells = []
        for m in MEASURES:
            v = vals(m, stat)
            cell = _ms(v, fmt)
            if positive:
                cell += f", positive in {int((v > 0).sum())} of {len(v)}"
            cells.append(cell)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")

    row("Pearson(IRM, IF)", "pearson_irm_if", positive=True)
    row("Pearson(LossDiff, IF)", "pearson_lossdiff_if")
    row("overlap with TIF: LossDiff-IRM", "overlap_lossdiff-irm", "{:.3f}")
    row("overlap with TIF: LossDiff alone", "overlap_lossdiff", "{:.3f}")
    row("overlap with TIF: IRM alone", "overlap_irm", "{:.3f}")
    fused, over_ld, over_irm = [], [], []
    for m in MEASURES:
        a, b, c = vals(m, "overlap_lossdiff-irm"), vals(m, "overlap_lossdiff"), vals(m, "overlap_irm")
        fused.append(f"{int((a > np.maximum(b, c)).sum())} of {len(a)}")
        over_ld.append(f"{int((a > b).sum())} of {len(a)}")
        over_irm.append(f"{int((a > c).sum())} of {len(a)}")
    rows.append("| LossDiff-IRM overlaps TIF more than LossDiff alone, seeds | " + " | ".join(over_ld) + " |")
    rows.append("| LossDiff-IRM overlaps TIF more than IRM alone, seeds | " + " | ".join(over_irm) + " |")
    rows.append("| LossDiff-IRM overlaps TIF more than both proxies alone (claim 5), seeds | " + " | ".join(fused) + " |")
    if (df.statistic == "auroc_if_flipped").any():
        row("AUROC of IF for mislabelled pairs", "auroc_if_flipped", "{:.3f}")
    split = ["", "With the default measurement, D_val split by the warm-up model's own margin h_v:", "",
             "| validation pairs in g_val | how many: mean (min-max) | Pearson(IRM, IF): mean (sd) | positive in |",
             "|---|---|---|---|"]
    for label, n_stat, r_stat in (("all (the default)", "n_val", "pearson_irm_if"),
                                  ("h_v > 0 only (ranked correctly)", "n_val_hv_pos", "pearson_irm_if_hv_pos"),
                                  ("h_v < 0 only (ranked wrongly)", "n_val_hv_neg", "pearson_irm_if_hv_neg")):
        k, r = vals("val_loss", n_stat), vals("val_loss", r_stat)
        split.append(f"| {label} | {np.mean(k):.0f} ({k.min():.0f}-{k.max():.0f}) | {_ms(r)} | "
                     f"{int((r > 0).sum())} of {len(r)} seeds |")
    seed_text = f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ", ".join(map(str, seeds))
    src = (f"<sub>From `figures/{CSV.name}` (tifkit sources {df.source_hash.iloc[0]}, commit "
           f"{str(df.commit.iloc[0])[:10]}, seeds {seed_text}, {n} seeds); generated by `{RERUN}`.</sub>")
    return "\n".join(head + rows + split + ["", src])


def stamped(rows: list[tuple], params) -> tuple[pd.DataFrame, dict]:
    """The long table of `rows` with the provenance columns, and the provenance record."""
    from tifkit.results import provenance, stamp_frame

    prov = provenance(params, roots=ROOTS)
    return stamp_frame(pd.DataFrame(rows, columns=["seed", "measure", "statistic", "value"]), prov), prov


def write(rows: list[tuple], params) -> None:
    """The CSV, its manifest and the docs block (module docstring)."""
    from tifkit.io import atomic_write_text
    from tifkit.results import write_manifest

    df, prov = stamped(rows, params)
    atomic_write_text(CSV, df.to_csv(index=False, float_format="%.6f"))
    write_manifest(MANIFEST, prov, [CSV], {"rerun": RERUN, "seeds": sorted({r[0] for r in rows}),
                                           "bench_code_hash": code_hash()})
    df = read_csv()  # the block shows the values as the file holds them (rounded), as the test renders them
    text = DOC.read_text()
    block = f"<!-- bench:if-measurements -->\n{render(df)}\n<!-- /bench:if-measurements -->"
    if not BLOCK.search(text):
        raise SystemExit(f"{DOC} has no <!-- bench:if-measurements --> block to fill")
    atomic_write_text(DOC, BLOCK.sub(lambda _: block, text))


def read_csv(path: Path = CSV) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"commit": str, "source_hash": str, "params_hash": str})


def main(argv=None):
    from tifkit.config import load_params
    from tifkit.workers import n_workers, quiet_pool_map

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params")
    ap.add_argument("--seeds", type=int, nargs="*", default=None)
    ap.add_argument("--set", action="append", default=[], dest="sets", help="section.key=value (repeatable)")
    ap.add_argument("--write", action="store_true",
                    help="write figures/if_measurements.csv, its manifest and docs/SCORES.md's block")
    args = ap.parse_args(argv)
    base = load_params(args.params, overrides=list(args.sets))
    seeds = args.seeds if args.seeds is not None else list(base.run.seeds)
    default = Path(base.source).resolve() == Path(load_params("tiny.yaml").source).resolve()
    if args.write and (args.sets or args.seeds is not None or not default):
        raise SystemExit("--write records params/tiny.yaml's parameters and seeds only (no --set, no --seeds)")
    tasks = {s: (one_seed, (args.params, list(args.sets), s)) for s in seeds}
    done = quiet_pool_map(tasks, n_workers(base, len(tasks)), "IF measurements (seeds)")
    rows = [r for s in seeds for r in done[s]]
    if args.write:
        write(rows, base)
        print(f"wrote {CSV.relative_to(ROOT)}, {MANIFEST.relative_to(ROOT)} and the block of {DOC.relative_to(ROOT)}")
    else:
        print(render(stamped(rows, base)[0]))


if __name__ == "__main__":
    main()
