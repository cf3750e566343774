"""Command line: tifkit run | score | select | evaluate | batch.

    tifkit run PARAMS                 world -> SFT -> warm-up -> full-data DPO, oracle rewards, WinRate
    tifkit score PARAMS               the per-pair score table; prints its path as the last line
    tifkit select PARAMS --rule lossdiff-irm --keep 0.64 -o OUT
                                      a dataset TRL's DPOTrainer loads unchanged (.jsonl, .parquet or a folder)
    tifkit evaluate PARAMS --rule R   continue DPO on rule R's selection and evaluate it against SFT
    tifkit batch PARAMS               the default batch: every seed and rule, tables and figures
    tifkit export-tiny OUT_DIR        write the world's SFT'd tiny model (+ tokenizer with a chat template
                                      and a tiny reward model in OUT_DIR/reward) as a standard HF folder
    tifkit notebooks [--scale ci|full] [names]
                                      execute notebooks/*.ipynb with papermill (python -m tifkit.notebooks)

Every command takes --seed N and --set section.key=value (repeatable) to override the file; PARAMS
defaults to params/tiny.yaml. Your own data: --data FILE (.jsonl or .parquet: the extension decides)
and --model PATH_OR_ID (a causal-LM checkpoint), e.g. tifkit score --data pairs.jsonl --model tiny-sft.
"""
from __future__ import annotations

import argparse
import json
import sys

from tifkit import TifkitError


DEFAULT_PARAMS = "params/tiny.yaml"
OUTPUT_SUFFIXES = (".jsonl", ".json", ".parquet")
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['content'] }}"
                 "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}")


def _params(args):
    """The params file with --set, then --data / --model (applied as given: no YAML parsing of paths)."""
    import dataclasses
    from pathlib import Path

    from tifkit.config import load_params

    p = load_params(args.params or DEFAULT_PARAMS, args.set)
    if getattr(args, "data", None):
        from tifkit.data import source_for_path

        data = dataclasses.replace(p.data, path=args.data, source=source_for_path(args.data))
        run = p.run if p.run.name != "tiny" else dataclasses.replace(p.run, name=Path(args.data).stem or "data")
        p = dataclasses.replace(p, data=data, run=run)
    if getattr(args, "model", None):
        p = dataclasses.replace(p, model=dataclasses.replace(p.model, name_or_path=args.model))
    return p


def _check_keep(keep) -> None:
    if keep is not None and not 0 < keep <= 1:
        raise TifkitError(f"--keep {keep:g} is not a fraction in (0, 1]; e.g. --keep 0.64 keeps 64% of the pairs.")


def _check_rule(rule: str, extra: tuple[str, ...] = ()) -> None:
    from tifkit.select import RULES

    known = (*RULES, *extra)
    if rule not in known:
        raise TifkitError(f"--rule {rule!r} is not a selection rule; use one of {', '.join(known)}.")


def _check_output(out: str) -> None:
    from pathlib import Path

    path = Path(out)
    if path.suffix and path.suffix.lower() not in OUTPUT_SUFFIXES and not path.is_dir():
        raise TifkitError(f"-o {out}: {path.suffix!r} is not an output format; name the file .jsonl or .parquet, or "
                          "give a folder name without an extension (a datasets folder).")
    if path.exists() and path.is_dir() and path.suffix.lower() in OUTPUT_SUFFIXES:
        raise TifkitError(f"-o {out} is an existing folder; give a file name or remove the folder.")


def _check_data(p) -> None:
    from tifkit.data import preflight

    preflight(p.data)


def _check_eval(p, rule: str | None = None) -> None:
    """Judge / prompt-set compatibility (and the oracle rule) before any training."""
    from tifkit.data import resolve_source
    from tifkit.evaluate import check_prompt_sets

    has_world = resolve_source(p.data).source == "world"
    if rule == "oracle" and not has_world:
        raise TifkitError("--rule oracle needs the built-in world's ground truth; on your own data pick a "
                          "scoring rule such as lossdiff-irm.")
    check_prompt_sets(p.eval, has_world)


def cmd_run(args) -> int:
    from tifkit.pipeline import smoke

    p = _params(args)
    _check_eval(p)
    _check_data(p)
    smoke(p, args.seed)
    return 0


def cmd_score(args) -> int:
    p = _params(args)
    _check_data(p)
    from tifkit.pipeline import prepare, say, score_stage

    ctx = prepare(p, args.seed)
    path = score_stage(ctx)
    if ctx.data_note:
        say(ctx.data_note)
    print(path)
    return 0


def cmd_select(args) -> int:
    import dataclasses

    import pandas as pd

    _check_keep(args.keep)
    _check_rule(args.rule)
    _check_output(args.output)
    p = _params(args)
    from tifkit.data import resolve_source

    if args.rule == "rm-margin" and not p.score.reward_model and resolve_source(p.data).source != "world":
        raise TifkitError("--rule rm-margin needs a reward model on your own data; set score.reward_model to a "
                          "sequence-classification checkpoint (e.g. --set score.reward_model=tiny-sft/reward).")
    _check_data(p)
    from tifkit.data import save_pairs
    from tifkit.pipeline import prepare, say, score_stage
    from tifkit.select import RULES, report, select

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
    if ctx.data_note:
        say(ctx.data_note)
    say(f"kept {int(res.mask.sum())} of {len(res.mask)} pairs -> {out}")
    print(out)
    return 0


def cmd_evaluate(args) -> int:
    _check_rule(args.rule, ("full", "oracle", "sft"))
    p = _params(args)
    _check_eval(p, args.rule)
    _check_data(p)
    from tifkit.pipeline import continue_stage, evaluate_sets, prepare, say, selection_mask, sft_stage

    ctx = prepare(p, args.seed)
    if args.rule == "sft":
        model_dir = sft_stage(ctx)
    else:
        from tifkit.batch import rule_label

        model_dir = continue_stage(ctx, rule_label(args.rule, p.select.keep), selection_mask(ctx, args.rule))
    results = evaluate_sets(ctx, args.rule, model_dir)
    for name, res in results.items():
        say(f"{args.rule} on {name}: WinRate vs SFT {res.winrate.estimate:.3f} [{res.winrate.lo:.3f}, "
            f"{res.winrate.hi:.3f}], SingleScore {res.single_score.estimate:.3f} ({len(res.table)} prompts)")
    print(json.dumps({k: r.summary() for k, r in results.items()}, default=str))
    return 0


def cmd_export_tiny(args) -> int:
    """The world's SFT'd tiny model, its tokenizer (with a chat template) and a tiny reward model
    (OUT_DIR/reward), written as standard Hugging Face folders for the own-data route."""
    import shutil
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tifkit.pipeline import prepare, reward_model_stage, say, sft_stage

    out = Path(args.out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "config.json").exists():
        raise TifkitError(f"{out} exists and is not an exported model folder; give a new or empty folder.")
    p = _params(args)
    if not p.model.is_tiny or p.data.source != "world":
        raise TifkitError("export-tiny writes a tiny family trained on the built-in world: drop --model/--data "
                          "(and model.name_or_path / data.source from the params).")
    ctx = prepare(p, args.seed)
    sft_dir, rm_dir = Path(sft_stage(ctx)), reward_model_stage(ctx)
    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    tok = AutoTokenizer.from_pretrained(sft_dir)
    tok.chat_template = CHAT_TEMPLATE  # a user turn is the prompt text, an assistant turn the response + <eos>
    tmp = out.with_name(f".{out.name}.tmp-export")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if rm_dir is not None:
        shutil.copytree(rm_dir, tmp / "reward", ignore=shutil.ignore_patterns("*.parquet", "stage.json"))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    say(f"tiny {p.model.family} SFT model ({model.config.max_position_embeddings} positions) and tokenizer -> {out}; "
        f"reward model -> {out / 'reward'}")
    print(out)
    return 0


def cmd_batch(args) -> int:
    from tifkit.batch import run_batch

    run_batch(_params(args), seeds=[args.seed] if args.seed is not None else None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tifkit", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name, fn, help_, own_data=True):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("params", nargs="?", default=None, help=f"a params/*.yaml file (default {DEFAULT_PARAMS})")
        sp.add_argument("--seed", type=int, default=None, help="override run.seed")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter, e.g. --set train.lr=1e-4 (repeatable)")
        if own_data:
            sp.add_argument("--data", metavar="FILE", help="your preference pairs: FILE.jsonl or FILE.parquet "
                            "(sets data.path; the extension sets data.source)")
            sp.add_argument("--model", metavar="PATH_OR_ID", help="an SFT'd causal-LM checkpoint (sets model.name_or_path)")
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
    sp = add("export-tiny", cmd_export_tiny, "write the world's SFT'd tiny model as a local checkpoint", own_data=False)
    sp.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (model, tokenizer with a chat template, reward/)")
    sub.add_parser("notebooks", help="execute the notebooks with papermill (see python -m tifkit.notebooks -h)",
                   add_help=False)
    return ap


def _quiet_libraries() -> None:
    """Our own progress bars stay; the libraries' per-file bars and advisory warnings go. Through
    their environment variables, so that a command that fails early imports neither library."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported already (e.g. main() called from Python)
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
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
