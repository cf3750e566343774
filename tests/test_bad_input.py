"""The practitioner's route and its mistakes, through the CLI.

- A corpus of broken data files (tests/fixtures/bad/) goes through `tifkit score` and `tifkit select`
  (two of them as subprocesses, the rest through the same entry point in-process): exit code 2, no
  traceback, one line naming the file.
- Every CLI mistake of issue 8 is one sentence, raised before any training.
- The own-data route exactly as the README shows it (export-tiny, score/select/evaluate with --data and
  --model, plain and chat JSONL), at a toy size.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tifkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "fixtures" / "bad"

# file -> what its sentence says (besides naming the file)
CORPUS = {
    "binary.jsonl": "is binary",
    "empty.jsonl": "is empty",
    "blank_lines.jsonl": "is empty",
    "latin1.jsonl": "is not UTF-8",
    "truncated.jsonl": "Line 3",
    "truncated_array.json": "not valid JSON",
    "not_objects.jsonl": "is not a JSON object",
    "missing_chosen.jsonl": "Column 'chosen' is missing",
    "all_identical.jsonl": "2 identical_responses",
    "null_fields.jsonl": "1 missing_field, 1 non_text",
    "not_parquet.parquet": "not a readable Parquet file",
    "pairs.csv": "Cannot tell the format",
}


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(ROOT)}


def _cli(args, cwd):
    return subprocess.run([sys.executable, "-m", "tifkit", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=300)


# Two of the runs go through a real process, as a user's shell runs them (the exit status, and nothing else
# on stderr: no warning or log line from an import); the rest call the same entry point in this process,
# which prints the same sentence and returns the same status without importing the libraries again
# (about 1.3 CPU seconds a process, 24 processes).
AS_SUBPROCESSES = {("latin1.jsonl", "score"), ("pairs.csv", "select")}


def _cli_here(args) -> subprocess.CompletedProcess:
    """`tifkit ARGS` in this process; a warning it raises is added to its stderr as a plain interpreter
    would print it (with the interpreter's default filters, then the ones `main` installs), since pytest
    would otherwise record it out of sight."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)  # hidden by default outside __main__
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(args)
    shown = "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in seen)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue() + shown)


@pytest.fixture(scope="module")
def corpus_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    jobs = {}
    for name in CORPUS:
        for cmd in ("score", "select"):
            extra = ["-o", str(root / f"{name}.jsonl")] if cmd == "select" else []
            jobs[(name, cmd)] = [cmd, "--data", str(BAD / name), "--set", f"run.root={root / 'runs'}", *extra]
    assert AS_SUBPROCESSES <= set(jobs)
    done = {key: _cli(args, ROOT) if key in AS_SUBPROCESSES else _cli_here(args) for key, args in jobs.items()}
    return root, done


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_file_is_one_sentence_naming_it(corpus_runs, name):
    root, runs = corpus_runs
    for cmd in ("score", "select"):
        proc = runs[(name, cmd)]
        err = proc.stderr.strip()
        assert proc.returncode == 2, (cmd, proc.stdout[-500:], err[-2000:])
        assert "Traceback" not in proc.stderr and err.startswith("tifkit: error:") and "\n" not in err, err
        assert name in err and CORPUS[name] in err, err
    assert not (root / "runs").exists() or not list((root / "runs").rglob("*.safetensors"))  # nothing trained


# ------------------------------------------------------------------------------------- CLI mistakes
def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tifkit: error:") and "\n" not in err, err
    return err


def test_cli_mistakes_are_one_sentence_before_any_work(tmp_path, capsys, plain_model):
    pairs = str(ROOT / "examples" / "pairs.jsonl")
    chat_prompts = tmp_path / "chat-prompts.jsonl"
    chat_prompts.write_text(json.dumps({"prompt": "Write a haiku about rain."}) + "\n")
    root = ["--set", f"run.root={tmp_path / 'runs'}"]
    own = ["--data", pairs, "--model", str(plain_model), *root]
    cases = [
        (["select", *own, "--keep", "1.5", "-o", "k.jsonl"], "--keep 1.5 is not a fraction"),
        (["select", *own, "--rule", "lossdif", "-o", "k.jsonl"], "--rule 'lossdif' is not a selection rule"),
        (["select", *own, "-o", str(tmp_path / "k.csv")], "'.csv' is not an output format"),
        (["select", *own, "--rule", "rm-margin", "-o", "k.jsonl"], "needs a reward model"),
        (["score", *own, "--set", "select.keep=[0.5"], "--set 'select.keep=[0.5': the value is not valid YAML"),
        (["score", *own, "--set", "train.lrr=1"], "--set train.lrr=1: unknown key 'train.lrr'"),
        (["score", *own, "--set", "world.min_len=99"], "--set world.min_len=99: section 'world'"),
        (["evaluate", *own, "--rule", "lossdiff-irm"], "eval.prompt_sets names 'world'"),
        (["evaluate", *own, "--set", f"eval.prompt_sets=[{chat_prompts}]"], "oracle judge scores only the built-in world"),
        (["evaluate", *own, "--set", f"eval.prompt_sets=[{pairs}]", "--set", "eval.judge=reward_model"],
         "eval.reward_model is empty"),
        (["evaluate", *own, "--set", "eval.prompt_sets=[missing/prompts.jsonl]", "--set", "eval.judge=llm"],
         "Prompt set file 'missing/prompts.jsonl' does not exist"),
        (["evaluate", *own, "--rule", "oracle"], "--rule oracle needs the built-in world"),
        (["evaluate", *own, "--set", f"eval.prompt_sets=[{pairs}]", "--set", "eval.judge=reward_model",
          "--set", f"eval.reward_model={tmp_path / 'no-rm'}"], "no-rm' does not exist"),
        (["score", "--data", pairs, "--model", str(tmp_path / "no-model"), *root], "does not exist"),
        (["score", "--data", pairs, *root], "Tiny families learn the task"),
        (["score", *root, "--set", f"data.path={BAD / 'pairs.csv'}"], "Cannot tell the format"),
        (["score", "--data", str(ROOT / "examples" / "pairs_chat.jsonl"), "--model", str(plain_model), *root],
         "holds chat messages but the tokenizer has no chat template"),
    ]
    for argv, expect in cases:
        assert expect in _error(capsys, argv), argv
    # outputs named by "." or "/": the folder the shell is in, or the root, never swapped out
    here = tmp_path / "here"
    here.mkdir()
    (here / "mine.txt").write_text("mine")
    cwd = os.getcwd()
    os.chdir(here)
    try:
        assert "is the folder you are in" in _error(capsys, ["select", *own, "-o", "."])
        assert "is the folder you are in" in _error(capsys, ["export-tiny", ".", *root])
        assert "is the file system's root" in _error(capsys, ["export-tiny", "/", *root])
        assert "it is a control for `tifkit evaluate --rule oracle`" in _error(
            capsys, ["select", *root, "--rule", "oracle", "-o", "k.jsonl"])
    finally:
        os.chdir(cwd)
    assert sorted(p.name for p in here.iterdir()) == ["mine.txt"]
    assert not list((tmp_path / "runs").rglob("*.safetensors"))  # nothing was trained


def test_data_path_without_source_scores_that_file_and_counts_too_long(tmp_path, plain_model):
    from tifkit.config import load_params
    from tifkit.pipeline import prepare

    p = load_params(ROOT / "params" / "tiny.yaml", [f"run.root={tmp_path}", f"data.path={ROOT / 'examples/pairs.jsonl'}",
                                                     f"model.name_or_path={plain_model}"])
    ctx = prepare(p)
    ids = set(ctx.train.pair_id) | set(ctx.val.pair_id)
    assert all(i.startswith("ex") for i in ids) and len(ids) == 80  # 82 rows, 2 dropped and counted
    assert "1 identical_responses, 1 too_long" in ctx.data_note  # at the model's 64 positions
    assert f"{len(ctx.val)} of the 80 clean pairs held out as D_val" in ctx.data_note
    # data.max_tokens, when set, wins over the context length; above the context it is refused
    p2 = load_params(ROOT / "params" / "tiny.yaml", [f"run.root={tmp_path}", f"data.path={ROOT / 'examples/pairs.jsonl'}",
                                                      f"model.name_or_path={plain_model}", "data.max_tokens=30"])
    assert "too_long (over 30 tokens, data.max_tokens" in prepare(p2).data_note
    p3 = load_params(ROOT / "params" / "tiny.yaml", [f"run.root={tmp_path}", f"data.path={ROOT / 'examples/pairs.jsonl'}",
                                                      f"model.name_or_path={plain_model}", "data.max_tokens=1000"])
    from tifkit import TifkitError

    with pytest.raises(TifkitError, match=r"above the context of model .* \(64 tokens\)"):
        prepare(p3)


# ----------------------------------------------------------------------------- the README's own-data route
def test_own_data_route_as_the_readme_shows_it(toy, tmp_path, capsys):
    """export-tiny -> score -> select -> evaluate with --data/--model, plain and chat data, offline."""
    import pandas as pd
    from datasets import load_dataset

    runs = ["--set", f"run.root={tmp_path / 'runs'}", "--set", "run.show_progress=false", "--set", "train.batch_size=16"]
    model = tmp_path / "tiny-sft"
    assert main(["export-tiny", str(model), *toy.cli()]) == 0  # the shared toy run's SFT and reward models
    capsys.readouterr()
    tok_cfg = json.loads((model / "tokenizer_config.json").read_text())
    assert (model / "config.json").exists() and (model / "reward" / "config.json").exists()
    assert "chat_template" in tok_cfg or (model / "chat_template.jinja").exists()

    for data in ("examples/pairs.jsonl", "examples/pairs_chat.jsonl"):
        own = ["--data", str(ROOT / data), "--model", str(model), *runs]
        assert main(["score", *own]) == 0
        out = capsys.readouterr().out
        table = pd.read_parquet(out.strip().splitlines()[-1])
        assert "1 identical_responses, 1 too_long" in out and "held out as D_val" in out
        assert "Only 4 validation pair(s): IF and LossDiff measure" in out  # a D_val this small is named
        assert len(table) == 76 and table[["irm", "lossdiff", "if"]].notna().all().all()  # 80 clean, 4 D_val
        kept = tmp_path / f"kept-{Path(data).stem}.jsonl"
        assert main(["select", *own, "--rule", "lossdiff-irm", "--keep", "0.64", "-o", str(kept)]) == 0
        assert f"kept 49 of 76 pairs -> {kept}" in capsys.readouterr().out
        assert len(load_dataset("json", data_files=str(kept), split="train")) == 49

    own = ["--data", str(ROOT / "examples/pairs.jsonl"), "--model", str(model), *runs]
    assert main(["evaluate", *own, "--rule", "lossdiff-irm", "--set", "eval.judge=reward_model",
                 "--set", f"eval.reward_model={model / 'reward'}",
                 "--set", f"eval.prompt_sets=[{ROOT / 'examples/prompts.jsonl'}]"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (summary,) = res.values()
    assert summary["n_prompts"] == 40 and 0 <= summary["winrate"]["estimate"] <= 1


def test_the_cli_passes_its_warning_filter_to_the_workers_it_spawns(monkeypatch):
    """`tifkit batch`'s spawned workers start new interpreters, which read PYTHONWARNINGS: the CLI's
    FutureWarning filter must be there (a 25-seed batch printed transformers' FutureWarning 300 times)."""
    import subprocess
    import sys

    from tifkit import cli

    monkeypatch.setenv("PYTHONWARNINGS", "default::ResourceWarning")
    cli._quiet_libraries()
    cli._quiet_libraries()  # twice: added once
    env = __import__("os").environ["PYTHONWARNINGS"]
    assert env == "default::ResourceWarning,ignore::FutureWarning"
    child = subprocess.run([sys.executable, "-c", "import warnings; warnings.warn('old', FutureWarning); print('ok')"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "ok" and "FutureWarning" not in child.stderr
