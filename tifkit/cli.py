"""Command line: tifkit run | score | select | evaluate | batch.

    tifkit run PARAMS                 world -> SFT -> warm-up -> full-data DPO, oracle rewards, WinRate
    tifkit score PARAMS               the per-pair score table; prints its path as the last line
    tifkit select PARAMS --rule lossdiff-irm --keep 0.64 -o OUT
                                      a dataset TRL's DPOTrainer loads unchanged (.jsonl, .parquet or a folder)
    tifkit evaluate PARAMS --rule R   continue DPO on rule R's selection and evaluate it against SFT
    tifkit batch PARAMS               the default batch: every seed and rule, tables and figures
    tifkit notebooks [--scale ci|full] [names]
                                      execute notebooks/*.ipynb with papermill (python -m tifkit.notebooks)

Every command takes --seed N and --set section.key=value (repeatable) to override the file.
"""
from __future__ import annotations

import argparse
import json
import sys

from tifkit import TifkitError


def _params(args):
    from tifkit.config import load_params

    return load_params(args.params, args.set)


def cmd_run(args) -> int:
    from tifkit.pipeline import smoke

    smoke(_params(args), args.seed)
    return 0


def cmd_score(args) -> int:
    from tifkit.pipeline import prepare, score_stage

    path = score_stage(prepare(_params(args), args.seed))
    print(path)
    return 0


def cmd_select(args) -> int:
    import dataclasses

    import pandas as pd

    from tifkit.data import save_pairs
    from tifkit.pipeline import prepare, say, score_stage
    from tifkit.select import RULES, report, select

    p = _params(args)
    ctx = prepare(p, args.seed)
    table = pd.read_parquet(score_stage(ctx))
    keep = p.select.keep if args.keep is None else args.keep
    res = select(table, dataclasses.replace(p.select, rule=args.rule, keep=keep))
    others = {}
    for rule in RULES:
        if rule in (args.rule, "full"):
            continue
        try:
            others[rule] = select(table, dataclasses.replace(p.select, rule=rule, keep=keep))
        except TifkitError:
            pass  # that rule's scores are not in the table (e.g. no reward model): left out of the report
    kept = ctx.train[res.mask]
    out = save_pairs(kept, args.output)
    text = report(res, others)
    print(text)
    say(f"kept {int(res.mask.sum())} of {len(res.mask)} pairs -> {out}")
    print(out)
    return 0


def cmd_evaluate(args) -> int:
    from tifkit.pipeline import continue_stage, evaluate_sets, prepare, say, selection_mask, sft_stage

    p = _params(args)
    ctx = prepare(p, args.seed)
    if args.rule == "sft":
        model_dir = sft_stage(ctx)
    else:
        from tifkit.batch import _label

        model_dir = continue_stage(ctx, _label(args.rule, p.select.keep), selection_mask(ctx, args.rule))
    results = evaluate_sets(ctx, args.rule, model_dir)
    for name, res in results.items():
        say(f"{args.rule} on {name}: WinRate vs SFT {res.winrate.estimate:.3f} [{res.winrate.lo:.3f}, "
            f"{res.winrate.hi:.3f}], SingleScore {res.single_score.estimate:.3f} ({len(res.table)} prompts)")
    print(json.dumps({k: r.summary() for k, r in results.items()}, default=str))
    return 0


def cmd_batch(args) -> int:
    from tifkit.batch import run_batch

    run_batch(_params(args), seeds=[args.seed] if args.seed is not None else None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tifkit", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("params", help="a params/*.yaml file")
        sp.add_argument("--seed", type=int, default=None, help="override run.seed")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set train.lr=1e-4 (repeatable)")
        sp.set_defaults(fn=fn)
        return sp

    add("run", cmd_run, "end-to-end smoke run")
    add("score", cmd_score, "per-pair score table")
    sp = add("select", cmd_select, "select pairs with a rule and write a TRL-loadable dataset")
    sp.add_argument("--rule", default="lossdiff-irm")
    sp.add_argument("--keep", type=float, default=None)
    sp.add_argument("-o", "--output", required=True, help="OUT.jsonl, OUT.parquet or a folder")
    sp = add("evaluate", cmd_evaluate, "train on a rule's selection and evaluate against SFT")
    sp.add_argument("--rule", default="full", help="a selection rule, 'full', 'oracle' or 'sft'")
    add("batch", cmd_batch, "the default batch: every seed and rule, tables and figures")
    sub.add_parser("notebooks", help="execute the notebooks with papermill (see python -m tifkit.notebooks -h)",
                   add_help=False)
    return ap


def _quiet_libraries() -> None:
    """Our own progress bars stay; the libraries' per-file bars and advisory warnings go."""
    import logging
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="trl")
    logging.getLogger("trl").setLevel(logging.ERROR)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["notebooks"]:  # its own options: see tifkit/notebooks.py
        from tifkit.notebooks import main as notebooks_main

        return notebooks_main(argv[1:])
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return args.fn(args)
    except TifkitError as e:
        print(f"tifkit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
