"""Command line: tifkit run | score | select | evaluate | batch | export-tiny | report | notebooks.

    tifkit run PARAMS                 world -> SFT -> warm-up -> full-data DPO, oracle rewards, WinRate
    tifkit score PARAMS               the per-pair score table; prints its path as the last line
    tifkit select PARAMS --rule lossdiff-irm --keep 0.64 -o OUT
                                      a dataset TRL's DPOTrainer loads unchanged (.jsonl, .json, .parquet or a folder)
    tifkit evaluate PARAMS --rule R   continue DPO on rule R's selection and evaluate it against SFT
    tifkit batch PARAMS               the default batch: every seed and rule, tables and figures
    tifkit export-tiny OUT_DIR        write the world's SFT'd tiny model (+ tokenizer with a chat template
                                      and a tiny reward model in OUT_DIR/reward) as a standard HF folder
    tifkit report --data FILE --model PATH [-o OUT_DIR]
                                      a data report (notebooks/07_your_data): executed notebook + HTML page
    tifkit notebooks [--scale ci|default|full] [names]
                                      execute notebooks/*.ipynb with papermill (python -m tifkit.notebooks)

Every command takes --seed N and --set section.key=value (repeatable) to override the file; PARAMS
defaults to params/tiny.yaml. Your own data: --data FILE (.jsonl, .json, optionally .gz, .parquet or a datasets folder: the extension decides)
and --model PATH_OR_ID (a causal-LM checkpoint), e.g. tifkit score --data pairs.jsonl --model tiny-sft.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from tifkit import TifkitError
from tifkit.config import load_params
from tifkit.io import PROGRESS, is_tifkit_output, publish_folder, recover_folder, stage_lock, sweep_temps, tmp_prefix
from tifkit.rules import find_rule, get_rule, rule_names, stage_label
# deferred: tifkit.batch, .data, .datareport, .evaluate, .notebooks, .pipeline, .select, .userfiles (pandas, torch), each in the command
# that needs it, so that --help and argument errors answer without loading them


DEFAULT_PARAMS = "params/tiny.yaml"
OUTPUT_SUFFIXES = (".jsonl", ".json", ".parquet")
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ m['content'] }}"
                 "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}")


def _params(args):
    """The params file with --set, then --data / --model as every command and `tifkit report` apply
    them (userfiles.own_params: absolute local paths, no YAML parsing of paths, and a run name that
    names the local files' content)."""
    from tifkit.userfiles import own_params

    p = load_params(args.params or DEFAULT_PARAMS, args.set)
    return own_params(p, getattr(args, "data", None), getattr(args, "model", None))


def _check_keep(keep) -> None:
    if keep is not None and not 0 < keep <= 1:
        raise TifkitError(f"--keep {keep:g} is not a fraction in (0, 1]; e.g. --keep 0.64 keeps 64% of the pairs.")


def _check_rule(rule: str, ground_truth: bool = False, extra: tuple[str, ...] = (), what: str = "--rule") -> str:
    """The registered name of `--rule` (aliases such as LossDiff-IRM work, case ignored), from the rule
    registry; `ground_truth` also allows the controls that read the world's ground truth (oracle).
    `what`: where the name came from, for the error (the option, or the params file's select.rule)."""
    if rule in extra:
        return rule
    known = tuple(dict.fromkeys((*rule_names(None if ground_truth else False), *extra)))
    spec = find_rule(rule)
    if spec is not None and spec.ground_truth and spec.name not in known:
        raise TifkitError(f"{what} {spec.name} reads the built-in world's ground truth: it is a control for "
                          f"`tifkit evaluate --rule {spec.name}`, not a selection to write out; use one of "
                          f"{', '.join(known)}.")
    if spec is None or spec.name not in known:
        raise TifkitError(f"{what} {rule!r} is not a selection rule; use one of {', '.join(known)}.")
    return spec.name


def _check_output(out: str, inputs: tuple = (), force: bool = False) -> None:
    """-o names a format, and writing it destroys none of the user's files (see data.check_output)."""
    from tifkit.data import check_output

    from tifkit.userfiles import out_path

    path = out_path(out)
    if path.suffix and path.suffix.lower() not in OUTPUT_SUFFIXES and not path.is_dir():
        raise TifkitError(f"-o {out}: {path.suffix!r} is not an output format; name the file .jsonl, .json or .parquet, "
                          "or give a folder name without an extension (a datasets folder).")
    check_output(path, inputs, force)


# a selection that keeps fewer pairs than this is refused (nothing to train on)
MIN_KEPT = 8
# fewer validation pairs than this on the user's data get a warning: IF and LossDiff then measure the
# effect of a pair on the loss of a handful of pairs
MIN_VAL = 8


def _say_data(ctx, say) -> None:
    """What cleaning and the D_val split did to the user's data, and a warning for a tiny D_val."""
    if not ctx.data_note:
        return
    note = ctx.data_note
    if 0 < len(ctx.val) < MIN_VAL:
        note += (f". Only {len(ctx.val)} validation pair(s): IF and LossDiff measure each pair's effect on the loss "
                 f"of these few; hold out more with data.val_size (a fraction, or a count such as "
                 f"--set data.val_size={MIN_VAL * 4})")
    say(note)


def _check_kept(n_kept: int, n: int, keep: float, rule: str) -> None:
    if n_kept < MIN_KEPT:
        need = min(1.0, MIN_KEPT / n) if n else 1.0
        raise TifkitError(f"--rule {rule} --keep {keep:g} keeps {n_kept} of {n} pairs, fewer than the {MIN_KEPT} a "
                          f"training run needs: raise --keep to at least {need:.3g}" +
                          (" or give more pairs." if need >= 1.0 else "."))


def _rule_columns(res, table) -> list[str]:
    """The score columns a selection rule read (written next to the kept pairs)."""
    cols = list(res.bands)
    col = res.details.get("column")
    if isinstance(col, str) and col not in cols:
        cols.append(col)
    if not isinstance(col, str):  # no column named instead: what the registry says the rule reads
        cols += list(get_rule(res.rule).needs)
    return [c for c in dict.fromkeys(cols) if c in table.columns]


def _check_data(p) -> None:
    from tifkit.data import preflight

    preflight(p.data)


def _check_eval(p, rule: str | None = None) -> None:
    """Judge / prompt-set compatibility (and the rules that read the world's ground truth) before any
    training."""
    from tifkit.data import resolve_source
    from tifkit.evaluate import check_prompt_sets

    has_world = resolve_source(p.data).source == "world"
    spec = find_rule(rule) if rule else None
    if spec is not None and spec.ground_truth and not has_world:
        raise TifkitError(f"--rule {rule} needs the built-in world's ground truth; on your own data pick a "
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
    _say_data(ctx, say)
    print(path)
    return 0


def cmd_select(args) -> int:
    import dataclasses

    import pandas as pd

    _check_keep(args.keep)
    if args.rule:  # a mistyped --rule answers before the model stack loads
        _check_rule(args.rule)
    p = _params(args)
    args.rule = _check_rule(args.rule or p.select.rule, what="--rule" if args.rule else "select.rule")
    _check_output(args.output, (p.data.path,), args.force)
    from tifkit.data import resolve_source

    # the reward-model margin column exists only where a reward model scores the pairs (the built-in
    # world trains one); whichever rule reads it needs one on the user's data
    if "rm_margin" in get_rule(args.rule).needs and not p.score.reward_model and resolve_source(p.data).source != "world":
        raise TifkitError(f"--rule {args.rule} needs a reward model on your own data; set score.reward_model to a "
                          "sequence-classification checkpoint (e.g. --set score.reward_model=tiny-sft/reward).")
    _check_data(p)
    from tifkit.data import save_pairs
    from tifkit.pipeline import prepare, say, score_stage
    from tifkit.select import report, select

    ctx = prepare(p, args.seed)
    keep = p.select.keep if args.keep is None else args.keep
    if get_rule(args.rule).uses_budget:  # before scoring: a band this narrow keeps too few pairs whatever the scores
        _check_kept(int(round(keep * len(ctx.train))), len(ctx.train), keep, args.rule)
    table = pd.read_parquet(score_stage(ctx))
    res = select(table, dataclasses.replace(p.select, rule=args.rule, keep=keep))
    _check_kept(int(res.mask.sum()), len(res.mask), keep, args.rule)
    others = {}
    for rule in rule_names(ground_truth=False):
        if rule == args.rule or not get_rule(rule).uses_budget:  # full data: nothing to compare
            continue
        try:
            others[rule] = select(table, dataclasses.replace(p.select, rule=rule, keep=keep))
        except TifkitError:
            pass  # that rule's scores are not in the table (e.g. no reward model): left out of the report
    if list(table["pair_id"]) != list(ctx.train["pair_id"]):  # pragma: no cover - the table is keyed by the pairs
        raise TifkitError(f"The score table's pairs differ from {ctx.run_dir}/data/train.parquet; rerun tifkit score.")
    kept = ctx.train[res.mask].reset_index(drop=True)
    for col in _rule_columns(res, table):  # the scores the pairs were selected by
        if col not in kept.columns:
            kept[col] = table.loc[res.mask, col].to_numpy()
    out = save_pairs(kept, args.output)
    text = report(res, others)
    print(text)
    _say_data(ctx, say)
    say(f"kept {int(res.mask.sum())} of {len(res.mask)} pairs -> {out}")
    print(out)
    return 0


def cmd_evaluate(args) -> int:
    args.rule = _check_rule(args.rule, ground_truth=True, extra=("sft",))
    p = _params(args)
    _check_eval(p, args.rule)
    _check_data(p)
    from tifkit.pipeline import continue_stage, evaluate_sets, prepare, say, selection_mask, sft_stage

    ctx = prepare(p, args.seed)
    if args.rule == "sft":
        model_dir = sft_stage(ctx)
    else:
        model_dir = continue_stage(ctx, stage_label(args.rule, p.select.keep), selection_mask(ctx, args.rule))
    results = evaluate_sets(ctx, args.rule, model_dir)
    for name, res in results.items():
        say(f"{args.rule} on {name}: WinRate vs SFT {res.winrate.estimate:.3f} [{res.winrate.lo:.3f}, "
            f"{res.winrate.hi:.3f}], SingleScore {res.single_score.estimate:.3f} ({len(res.table)} prompts)")
    print(json.dumps({k: r.summary() for k, r in results.items()}, default=str))
    return 0


def cmd_export_tiny(args) -> int:
    """The world's SFT'd tiny model, its tokenizer (with a chat template) and a tiny reward model
    (OUT_DIR/reward), written as standard Hugging Face folders for the own-data route. Written into a
    temporary sibling and swapped in (io.replace_folder); only a folder tifkit wrote is replaced."""
    import shutil
    import tempfile
    from pathlib import Path

    from tifkit.userfiles import out_path, plain_permissions

    out = out_path(args.out_dir, "export-tiny")
    recover_folder(out)
    if out.exists() and not out.is_dir():
        raise TifkitError(f"{out} is an existing file; give export-tiny a new or empty folder name.")
    if out.is_dir() and any(out.iterdir()) and not is_tifkit_output(out):
        raise TifkitError(f"{out} is a folder with files tifkit did not write (no .tifkit-output marker), and "
                          "export-tiny never replaces such a folder: give a new or empty folder name.")
    p = _params(args)
    if not p.model.is_tiny or p.data.source != "world":
        raise TifkitError("export-tiny writes a tiny family trained on the built-in world: drop --model/--data "
                          "(and model.name_or_path / data.source from the params).")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tifkit.pipeline import prepare, reward_model_stage, say, sft_stage

    ctx = prepare(p, args.seed)
    sft_dir, rm_dir = Path(sft_stage(ctx)), reward_model_stage(ctx)
    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    tok = AutoTokenizer.from_pretrained(sft_dir)
    tok.chat_template = CHAT_TEMPLATE  # a user turn is the prompt text, an assistant turn the response + <eos>
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(out.parent, recursive=False)  # temp folders of killed exports
    with stage_lock(out):
        tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(out.name), dir=out.parent))
        try:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            if rm_dir is not None:
                shutil.copytree(rm_dir, tmp / "reward", ignore=shutil.ignore_patterns("*.parquet", "stage.json"))
            plain_permissions(tmp)  # the weights come out 0600 from their writers: readable like any file of the user's
            publish_folder(tmp, out, "export-tiny")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    n_ctx = model.config.max_position_embeddings
    say(f"tiny {p.model.family} SFT model and tokenizer -> {out}; reward model -> {out / 'reward'}. Its context is "
        f"{n_ctx} tokens (characters): it is for trying the commands, and longer pairs are dropped as too_long")
    print(out)
    return 0


def cmd_report(args) -> int:
    from tifkit.datareport import run_report

    print(run_report(args.params or DEFAULT_PARAMS, args.set, args.data, args.model, args.seed, args.output))
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
            sp.add_argument("--data", metavar="FILE", help="your preference pairs: FILE.jsonl, FILE.json, either "
                            "gzip-compressed (.gz), FILE.parquet or a saved datasets folder (sets data.path; the "
                            "extension sets data.source)")
            sp.add_argument("--model", metavar="PATH_OR_ID", help="an SFT'd causal-LM checkpoint (sets model.name_or_path)")
        sp.set_defaults(fn=fn)
        return sp

    add("run", cmd_run, "end-to-end smoke run")
    add("score", cmd_score, "per-pair score table")
    sp = add("select", cmd_select, "select pairs with a rule and write a TRL-loadable dataset")
    sp.add_argument("--rule", default=None, help="a selection rule (default: the params file's select.rule)")
    sp.add_argument("--keep", type=float, default=None,
                    help="the fraction of pairs to keep, in (0, 1] (default: the params file's select.keep)")
    sp.add_argument("-o", "--output", required=True,
                    help="OUT.jsonl, OUT.json (one array), OUT.parquet or a folder (a new one, or one tifkit wrote)")
    sp.add_argument("--force", action="store_true", help="replace an existing -o file (never the input data)")
    sp = add("evaluate", cmd_evaluate, "train on a rule's selection and evaluate against SFT")
    sp.add_argument("--rule", default="full", help="a selection rule, 'full', 'oracle' or 'sft'")
    add("batch", cmd_batch, "the default batch: every seed and rule, tables and figures")
    sp = add("export-tiny", cmd_export_tiny, "write the world's SFT'd tiny model as a local checkpoint", own_data=False)
    sp.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (model, tokenizer with a chat template, reward/)")
    sp = add("report", cmd_report, "a data report on your pairs: executed notebook and a static HTML page")
    sp.add_argument("-o", "--output", default=None, metavar="OUT_DIR",
                    help="folder to write (a new one, or one tifkit wrote; default <run.root>/reports/<name>-s<seed>)")
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
    # the worker processes `tifkit batch` spawns read PYTHONWARNINGS at start-up: without it each of
    # them printed transformers' FutureWarning once per training (300 lines in a 25-seed batch)
    quiet = "ignore::FutureWarning"
    if quiet not in os.environ.get("PYTHONWARNINGS", ""):
        os.environ["PYTHONWARNINGS"] = ",".join(x for x in (os.environ.get("PYTHONWARNINGS"), quiet) if x)


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
        return _fail(str(e))
    except KeyboardInterrupt:
        # a loop that finished earlier in the command (every chunk scored) is not where it stopped
        where = (f" from {PROGRESS['done']} of {PROGRESS['total']} {PROGRESS['what']}"
                 if PROGRESS.get("total") and PROGRESS["done"] < PROGRESS["total"]
                 else " (finished stages and chunks are kept)")
        return _fail(f"interrupted; rerun the same command to resume{where}.", 130)
    except MemoryError:
        return _fail("out of memory: lower the batch sizes (sft.batch_size, train.batch_size, score.batch_size, "
                     "eval.batch_size) or score.memory_budget_gb, then rerun the same command to resume.")
    except Exception as e:  # noqa: BLE001 - the environment's failures get one sentence; anything else is a bug
        msg = _environment_error(e)
        if msg is None:
            raise
        return _fail(msg)


def _fail(msg: str, code: int = 2) -> int:
    print(f"tifkit: error: {msg}", file=sys.stderr)
    return code


_ERRNO_FIX = {
    errno.ENOSPC: "the disk is full; free some space (or set run.root to a folder on another disk)",
    errno.EFBIG: "a file grew past the file-size limit (ulimit -f); raise the limit",
    errno.EROFS: "the folder is read-only; set run.root (--set run.root=DIR) to a writable folder, or write -o elsewhere",
    errno.EACCES: "permission denied; set run.root (--set run.root=DIR) to a folder you can write, or write -o "
                  "elsewhere",
    errno.EDQUOT: "the disk quota is exhausted; free some space (or set run.root to a folder on another disk)",
}
_MESSAGE_ERRNO = {"no space left on device": errno.ENOSPC, "file too large": errno.EFBIG,
                  "read-only file system": errno.EROFS, "permission denied": errno.EACCES,
                  "disk quota exceeded": errno.EDQUOT}


def _environment_error(e: BaseException) -> str | None:
    """One sentence for a full disk, a file-size limit, a read-only folder or out-of-memory anywhere in
    `e`'s chain (libraries wrap OSErrors in their own errors); None for anything else."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ == "OutOfMemoryError":  # torch's (CUDA) out-of-memory error
            return ("the accelerator ran out of memory: lower the batch sizes (score.batch_size, train.batch_size, "
                    "eval.batch_size) or set score.memory_budget_gb, then rerun the same command to resume.")
        code = e.errno if isinstance(e, OSError) else None
        if code not in _ERRNO_FIX:
            text = str(e).lower()
            code = next((c for m, c in _MESSAGE_ERRNO.items() if m in text), None)
        if code in _ERRNO_FIX:
            name = getattr(e, "filename", None)
            where = f" writing {name}" if name else ""
            return (f"{os.strerror(code).lower()}{where}: {_ERRNO_FIX[code]}, then rerun the same command (finished "
                    "stages and chunks are kept).")
        e = e.__cause__ or e.__context__
    return None


if __name__ == "__main__":
    raise SystemExit(main())
