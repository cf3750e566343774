"""No user file is ever destroyed, and a command exits 0 only with a usable result (issue 15).

Every CLI case asserts the exit code, one sentence without a traceback, and that no file outside
the run root changed (names and sha256 of the user's folder and the input files, before and after).
Kills between the renames of a folder replacement are injected in subprocesses (os._exit).
Bad-input files: tests/fixtures/user/ (and tests/fixtures/bad/).
"""
from __future__ import annotations

import builtins
import errno
import gzip
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tifkit import TifkitError
from tifkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
PAIRS = ROOT / "examples" / "pairs.jsonl"


def _snapshot(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if "runs" not in p.parts)
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _sentence(capsys, argv, code=2) -> str:
    rc = main(argv)
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert rc == code, (argv, cap.out[-500:], err[-1500:])
    assert err.startswith("tifkit: error:") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def user(tmp_path):
    """A user's folder: notes, a copy of the example pairs, a previous output."""
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes\n")
    (folder / "pairs.jsonl").write_bytes(PAIRS.read_bytes())
    (folder / "old.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    return folder


# ------------------------------------------------------------------------------- -o never destroys
def test_output_that_would_destroy_a_user_file_is_refused(tmp_path, capsys, user, plain_model):
    runs = ["--set", f"run.root={tmp_path / 'runs'}"]
    own = ["--data", str(user / "pairs.jsonl"), "--model", str(plain_model), *runs]
    marked = tmp_path / "marked"  # a tifkit output folder that holds the input data
    marked.mkdir()
    (marked / ".tifkit-output").write_text("{}")
    (marked / "pairs.jsonl").write_bytes(PAIRS.read_bytes())
    cases = [
        (["select", *own, "-o", str(user)], "would overwrite the input data"),  # the input lives in that folder
        (["select", "--data", str(PAIRS), "--model", str(plain_model), *runs, "-o", str(user)], "tifkit did not write"),
        (["select", *own, "-o", str(user / "pairs.jsonl")], "would overwrite the input data"),
        (["select", *own, "-o", str(user / "pairs.jsonl"), "--force"], "would overwrite the input data"),
        (["select", *own, "-o", str(user / "old.jsonl")], "exists: add --force"),
        (["select", *own, "-o", str(user / "notes.txt")], "is not an output format"),
        (["select", "--data", str(marked / "pairs.jsonl"), "--model", str(plain_model), *runs, "-o", str(marked)],
         "would overwrite the input data"),
        (["export-tiny", str(user), *runs], "tifkit did not write"),
        (["export-tiny", str(user / "notes.txt"), *runs], "is an existing file"),
    ]
    (user / "plainfile").write_text("not a folder\n")
    cases.append((["select", *own, "-o", str(user / "plainfile")], "is an existing file"))
    before = _snapshot(user, marked, PAIRS)
    for argv, expect in cases:
        err = _sentence(capsys, argv)
        assert expect in err, (argv, err)
    assert _snapshot(user, marked, PAIRS) == before
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.safetensors"))


def test_save_pairs_replaces_only_its_own_folders_and_leaves_no_temp(tmp_path):
    from tifkit.data import save_pairs
    from tifkit.io import OUTPUT_MARKER

    df = pd.read_json(PAIRS, lines=True)
    out = save_pairs(df.iloc[:5], tmp_path / "kept")
    assert (out / OUTPUT_MARKER).is_file()
    save_pairs(df.iloc[:3], out)  # its own folder: replaced
    from datasets import load_from_disk

    assert len(load_from_disk(str(out))) == 3
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "x.txt").write_text("keep me")
    with pytest.raises(TifkitError, match="tifkit did not write"):
        save_pairs(df, tmp_path / "theirs")
    assert (tmp_path / "theirs" / "x.txt").read_text() == "keep me"

    def boom(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    for name in ("f.jsonl", "f.parquet", "folder"):  # a failed write leaves no temp file beside the output
        import datasets

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("tifkit.data._write_json", boom)
            mp.setattr(pd.DataFrame, "to_parquet", boom)
            mp.setattr(datasets.Dataset, "save_to_disk", boom)
            with pytest.raises(OSError):
                save_pairs(df, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "theirs"]


def test_json_output_is_one_json_array_that_datasets_loads(tmp_path):
    from datasets import load_dataset

    from tifkit.data import save_pairs

    df = pd.read_json(PAIRS, lines=True).iloc[:7]
    path = save_pairs(df, tmp_path / "kept.json")
    assert isinstance(json.loads(path.read_text()), list)
    assert len(load_dataset("json", data_files=str(path), split="train")) == 7


_KILL = textwrap.dedent('''
    import os, sys
    import pandas as pd
    import tifkit.io as tio
    from tifkit.data import save_pairs
    mode, out = sys.argv[1], sys.argv[2]
    df = pd.read_json(sys.argv[3], lines=True).iloc[:2]
    real_exchange, real_replace = tio._exchange, os.replace
    if mode == "before-swap":
        tio._exchange = lambda a, b: os._exit(9)
    elif mode == "after-swap":
        def exchange(a, b):
            real_exchange(a, b)
            os._exit(9)
        tio._exchange = exchange
    elif mode == "between-renames":  # the two-rename fallback (systems without an atomic exchange)
        tio._exchange = lambda a, b: False
        calls = []
        def replace(a, b):
            calls.append(b)
            if len(calls) == 2:
                os._exit(9)
            return real_replace(a, b)
        os.replace = replace
    save_pairs(df, out)
''')


@pytest.mark.parametrize("mode,expect", [("before-swap", 5), ("after-swap", 2), ("between-renames", 5)])
def test_kill_during_folder_replacement_leaves_old_or_new_complete(tmp_path, mode, expect):
    from datasets import load_from_disk

    from tifkit.data import check_output, save_pairs

    out = tmp_path / "kept"
    save_pairs(pd.read_json(PAIRS, lines=True).iloc[:5], out)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", _KILL, mode, str(out), str(PAIRS)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr[-2000:]
    if mode == "between-renames":  # the one window of the fallback: the next command puts the old folder back
        assert not out.exists() and (tmp_path / ".kept.tifkit-old").is_dir()
        check_output(out)
    assert len(load_from_disk(str(out))) == expect  # old (5 rows) or new (2 rows), complete
    save_pairs(pd.read_json(PAIRS, lines=True).iloc[:4], out)  # the next write sweeps the killed run's temps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert len(load_from_disk(str(out))) == 4


def test_replace_folder_puts_the_old_folder_back_when_the_second_rename_fails(tmp_path, monkeypatch):
    import tifkit.io as tio

    old, new = tmp_path / "out", tmp_path / ".out.tmp-new"
    old.mkdir()
    (old / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    monkeypatch.setattr(tio, "_exchange", lambda a, b: False)
    real = os.replace

    def replace(a, b):
        if Path(a) == new:  # the new folder cannot be moved in
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(a, b)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        tio.replace_folder(new, old)
    assert (old / "a").read_text() == "old" and not (tmp_path / ".out.tifkit-old").exists()


def test_killed_file_write_leaves_a_temp_that_the_next_write_removes(tmp_path):
    code = textwrap.dedent('''
        import os, sys
        import pandas as pd
        import tifkit.data as td
        df = pd.read_json(sys.argv[2], lines=True)
        def die(df, path, lines):
            open(path, "w").write("half")
            os._exit(9)
        td._write_json = die
        td.save_pairs(df, sys.argv[1])
    ''')
    out = tmp_path / "kept.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", code, str(out), str(PAIRS)], env=env, timeout=120).returncode == 9
    assert not out.exists() and len(list(tmp_path.glob(".kept.jsonl.tmp-*"))) == 1
    from tifkit.data import save_pairs

    save_pairs(pd.read_json(PAIRS, lines=True), tmp_path / "other.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.jsonl"]


# ------------------------------------------------------------------- inputs read or refused truthfully
def test_data_files_are_read_or_refused_with_the_real_cause(tmp_path, capsys, plain_model):
    from tifkit.config import DataParams
    from tifkit.data import load_pairs

    df, rep = load_pairs(DataParams(source="jsonl", path=str(FIX / "user" / "pairs.jsonl.gz"), verbose=False))
    assert rep.n_in == 82 and len(df) == 81  # the gzip route reads the same rows as the plain file
    df, rep = load_pairs(DataParams(source="jsonl", path=str(FIX / "user" / "chat_prompt_string_answers.jsonl"),
                                    verbose=False))
    assert len(df) == 12 and not rep.dropped["non_text"]
    assert df.chosen[0] == [{"role": "assistant", "content": "abhkllmn"}] and df.prompt[0][0]["role"] == "user"

    runs = ["--set", f"run.root={tmp_path / 'runs'}"]
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    (not_a_model / "README").write_text("hi")
    plain_folder = tmp_path / "data-folder"
    plain_folder.mkdir()
    (plain_folder / "pairs.jsonl").write_bytes(PAIRS.read_bytes())
    params = tmp_path / "elsewhere" / "mine.yaml"
    params.parent.mkdir()
    params.write_text("base: no-such.yaml\n")
    cases = [
        (["score", "--data", str(FIX / "user" / "cut_short.jsonl.gz"), *runs], "not a complete gzip file"),
        (["score", "--data", str(FIX / "user" / "pairs.csv.gz"), *runs], "reads compressed JSON lines only"),
        (["score", "--data", str(plain_folder), *runs], "not a saved datasets folder"),
        (["score", "--data", str(PAIRS), "--model", str(not_a_model), *runs], "holds no Hugging Face checkpoint"),
        (["score", "--data", str(FIX / "bad" / "all_identical.jsonl"), *runs], "no preference to learn"),
        (["score", "--data", str(FIX / "bad" / "all_too_long.jsonl"), "--model", str(plain_model), *runs],
         f"64 tokens, the context of model '{plain_model}'"),
        (["score", "--data", str(PAIRS), "--model", str(plain_model), *runs, "--set", "data.max_tokens=100"],
         f"data.max_tokens=100 is above the context of model '{plain_model}' (64 tokens)"),
        (["score", str(params), *runs], "no-such.yaml does not exist, and 'no-such.yaml' is not a params file shipped with tifkit"),
    ]
    before = _snapshot(FIX, PAIRS, tmp_path / "elsewhere", not_a_model, plain_folder)
    for argv, expect in cases:
        err = _sentence(capsys, argv)
        assert expect in err and "max_tokens and" not in err and "hf auth" not in err, (argv, err)
    assert _snapshot(FIX, PAIRS, tmp_path / "elsewhere", not_a_model, plain_folder) == before


def test_params_outside_params_folder_can_base_a_packaged_file(tmp_path):
    from tifkit.config import load_params

    mine = tmp_path / "mine.yaml"
    mine.write_text("base: tiny.yaml\ntrain:\n  lr: 0.0005\n")
    p, tiny = load_params(mine), load_params("tiny.yaml")
    assert p.train.lr == 0.0005 and p.sft == tiny.sft and p.world == tiny.world
    mine.write_text("base: params/tiny-qwen.yaml\n")
    assert load_params(mine).model.family == load_params("tiny-qwen.yaml").model.family


@pytest.mark.parametrize("item,limit", [
    ("eval.max_new_tokens=1000000000", "eval.max_new_tokens is 1000000000, outside the allowed 1..32768"),
    ("sft.batch_size=1000000000", "sft.batch_size is 1000000000, outside the allowed 1..4096"),
    ("train.batch_size=0", "train.batch_size is 0, outside the allowed 1..4096"),
    ("score.batch_size=100000", "score.batch_size is 100000, outside the allowed 1..4096"),
    ("eval.batch_size=-1", "eval.batch_size is -1"),
    ("data.max_tokens=0", "data.max_tokens is 0"),
])
def test_absurd_sizes_are_refused_up_front_naming_the_limit(tmp_path, capsys, item, limit):
    err = _sentence(capsys, ["score", "--set", f"run.root={tmp_path / 'runs'}", "--set", item])
    assert f"--set {item}" in err and limit in err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------ exit 0 only when usable
def test_selection_keeping_too_few_pairs_stops_before_scoring(tmp_path, capsys, plain_model):
    out = tmp_path / "user" / "kept.jsonl"
    err = _sentence(capsys, ["select", "--data", str(PAIRS), "--model", str(plain_model), "--set",
                             f"run.root={tmp_path / 'runs'}", "--keep", "0.001", "-o", str(out)])
    assert "keeps 0 of 76 pairs, fewer than the 8" in err and "--keep to at least 0.105" in err
    assert not out.exists() and not list((tmp_path / "runs").rglob("*.safetensors"))


def test_environment_failures_are_one_sentence(tmp_path, capsys, monkeypatch, plain_model):
    import tifkit.pipeline as pl

    own = ["--data", str(PAIRS), "--model", str(plain_model), "--set", f"run.root={tmp_path / 'runs'}"]
    raised = [OSError(errno.ENOSPC, "No space left on device", "runs/x/chunk-00001.parquet"),
              OSError(errno.EFBIG, "File too large", "runs/x/chunk-00001.parquet"),
              OSError(errno.EROFS, "Read-only file system", "runs/x/params.yaml"),
              RuntimeError("[enforce fail] PytorchStreamWriter failed: No space left on device"),
              MemoryError()]
    expect = ["no space left on device writing runs/x/chunk-00001.parquet", "file too large writing",
              "read-only file system writing runs/x/params.yaml", "no space left on device: the disk is full",
              "out of memory: lower the batch sizes"]
    for exc, text in zip(raised, expect):
        def fail(ctx, exc=exc):
            raise exc
        monkeypatch.setattr(pl, "score_stage", fail)
        err = _sentence(capsys, ["score", *own])
        assert text in err, err
    monkeypatch.setattr(pl, "score_stage", lambda ctx: (_ for _ in ()).throw(ZeroDivisionError("a bug")))
    with pytest.raises(ZeroDivisionError):  # a bug is not dressed up as the environment's fault
        main(["score", *own])


def test_prepare_rewrites_nothing_when_unchanged(tmp_path, monkeypatch, plain_model):
    from tifkit.config import load_params
    from tifkit.pipeline import prepare

    p = load_params("tiny.yaml", [f"run.root={tmp_path}", f"data.path={PAIRS}", f"model.name_or_path={plain_model}"])
    ctx = prepare(p)
    files = [ctx.run_dir / "params.yaml", ctx.run_dir / "data" / "train.parquet", ctx.run_dir / "data" / "val.parquet"]
    stat = {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files}
    real_open = builtins.open

    def read_only(file, mode="r", *a, **k):  # the run root as a read-only mount would be
        if any(c in mode for c in "wax+") and str(tmp_path) in str(file):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", read_only)
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(errno.EROFS, "read-only", b)))
    ctx2 = prepare(p)
    assert {f: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files} == stat
    assert ctx2.train.equals(ctx.train)


# ------------------------------------------------------------------ Ctrl-C during scoring, then resume
def test_ctrl_c_during_scoring_says_where_a_rerun_resumes(tmp_path, capsys, monkeypatch, plain_model):
    import tifkit.scores as sc

    own = ["--data", str(PAIRS), "--model", str(plain_model), "--set", f"run.root={tmp_path / 'runs'}",
           "--set", "score.chunk_size=20", "--set", "run.show_progress=false", "--set", "train.batch_size=16"]
    real, calls = sc._write_chunk, []

    def interrupt_second(df, path, key):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(df, path, key)

    monkeypatch.setattr(sc, "_write_chunk", interrupt_second)
    err = _sentence(capsys, ["score", *own], code=130)
    assert err == "tifkit: error: interrupted; rerun the same command to resume from 1 of 4 chunks."
    monkeypatch.setattr(sc, "_write_chunk", real)
    assert main(["score", *own]) == 0  # the rerun resumes: the finished chunk is reused, three computed
    table = pd.read_parquet(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(table) == 76
    (log,) = (tmp_path / "runs").rglob("chunks.log")
    assert len(log.read_text().splitlines()) == 4

    out = tmp_path / "user" / "kept.jsonl"  # the selected file carries the scores it was selected by
    assert main(["select", *own, "--rule", "lossdiff-irm", "--keep", "0.64", "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 49 and {"pair_id", "prompt", "chosen", "rejected", "lossdiff", "irm"} <= set(rows[0])
    by_id = table.set_index("pair_id")
    for r in rows:  # exactly the table's values (floats written so that they read back bit for bit)
        assert r["lossdiff"] == by_id.loc[r["pair_id"], "lossdiff"] and r["irm"] == by_id.loc[r["pair_id"], "irm"]
    capsys.readouterr()
    before = _snapshot(out)
    err = _sentence(capsys, ["select", *own, "--rule", "irm", "-o", str(out)])  # exists: not replaced
    assert "add --force" in err and _snapshot(out) == before
    assert main(["select", *own, "--rule", "tif", "--force", "-o", str(out)]) == 0
    cols = set(json.loads(out.read_text().splitlines()[0]))
    assert "if" in cols and "lossdiff" not in cols


def _read_only_under(monkeypatch, root: Path) -> None:
    """Writes under `root` fail as on a read-only mount (root ignores file modes, so they are patched)."""
    import tempfile

    real_open, real_replace = builtins.open, os.replace
    real_mkstemp, real_mkdtemp = tempfile.mkstemp, tempfile.mkdtemp

    def under(p) -> bool:
        return p is not None and str(root) in os.path.abspath(str(p))

    def deny(p):
        raise OSError(errno.EROFS, "Read-only file system", str(p))

    def ro_open(file, mode="r", *a, **k):
        return deny(file) if any(c in mode for c in "wax+") and under(file) else real_open(file, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", ro_open)
    monkeypatch.setattr(os, "replace", lambda a, b, **k: deny(b) if under(b) else real_replace(a, b, **k))
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: deny(dir) if under(dir) else
                        real_mkstemp(*a, dir=dir, **k))
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, dir=None, **k: deny(dir) if under(dir) else
                        real_mkdtemp(*a, dir=dir, **k))


def test_read_only_run_root_serves_select_after_score(tmp_path, capsys, monkeypatch, plain_model):
    own = ["--data", str(PAIRS), "--model", str(plain_model), "--set", f"run.root={tmp_path / 'runs'}",
           "--set", "run.show_progress=false", "--set", "train.batch_size=16"]
    assert main(["score", *own]) == 0
    capsys.readouterr()
    _read_only_under(monkeypatch, tmp_path / "runs")
    out = tmp_path / "elsewhere" / "kept.parquet"
    assert main(["select", *own, "--keep", "0.5", "-o", str(out)]) == 0, capsys.readouterr().err
    assert len(pd.read_parquet(out)) == 38
    err = _sentence(capsys, ["score", *own, "--set", "score.batch_size=8"])  # a new table must be written
    assert "read-only file system writing" in err and "set run.root" in err
    monkeypatch.undo()

    import resource  # a real file-size limit (EFBIG): the output outgrows it, the cached run is only read

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    big = tmp_path / "user" / "big.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tifkit", "select", *own, "--keep", "0.5", "-o", str(big)],
                          env=env, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    err = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert err.startswith(f"tifkit: error: file too large writing {big}") and "ulimit -f" in err, err
    assert not big.parent.exists() or not list(big.parent.iterdir())  # no half file, no temp file


TOY = ["--set", "world.n_sft=300", "--set", "sft.steps=30", "--set", "model.hidden_size=32",
       "--set", "score.rm_steps=20", "--set", "world.n_rm=16", "--set", "run.show_progress=false"]


def test_export_tiny_replaces_its_own_export_atomically(tmp_path, capsys):
    out = tmp_path / "tiny-sft"
    args = ["export-tiny", str(out), "--set", f"run.root={tmp_path / 'runs'}", *TOY]
    assert main(args) == 0
    assert (out / ".tifkit-output").is_file() and (out / "reward" / "config.json").is_file()
    umask = os.umask(0)
    os.umask(umask)
    modes = {str(f.relative_to(out)): f.stat().st_mode & 0o777 for f in out.rglob("*")}
    assert "model.safetensors" in modes and "reward/model.safetensors" in modes
    assert {m for f, m in modes.items()} <= {0o666 & ~umask, 0o777 & ~umask}, modes  # as the user's own files
    code = textwrap.dedent('''
        import os, sys
        import tifkit.io as tio
        from tifkit.cli import main
        real = tio._exchange
        def exchange(a, b):
            real(a, b)
            os._exit(9)
        tio._exchange = exchange
        main(sys.argv[1:])
    ''')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(out)  # the new export is complete at the path
    assert AutoTokenizer.from_pretrained(out).chat_template and (out / ".tifkit-output").is_file()
    assert len(list(tmp_path.glob(".tiny-sft.tmp-*"))) == 1  # the old one, under a temp name of the killed run
    capsys.readouterr()
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "tiny-sft"]
    said = capsys.readouterr()
    assert "Its context is 64 tokens" in said.out + said.err  # the limit is stated where the model is made


def test_a_data_file_or_model_changed_in_place_is_a_new_run(tmp_path, monkeypatch):
    """The pipeline keys a run folder by the parameters, paths included; the commands put a fingerprint
    of the local files' content in the run's name (tifkit.userfiles), so an edited file never meets its
    old scores, and one file reached by a relative and an absolute path is one run."""
    import dataclasses

    from tifkit import userfiles
    from tifkit.cli import _params, build_parser
    from tifkit.data import save_pairs
    from tifkit.userfiles import own_params

    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"q{i}", "chosen": "yes", "rejected": "no"} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    args = lambda d, m="model": build_parser().parse_args(["score", "--data", d, "--model", m])  # noqa: E731
    first = _params(args("pairs.jsonl"))
    assert first.data.path == str(data) and first.model.name_or_path == str(model)
    assert _params(args(str(data))) == first  # relative and absolute: the same run
    assert first.run.name.startswith("pairs-") and len(first.run.name) == len("pairs-") + 8
    data.write_text(data.read_text().replace('"yes", "rejected": "no"', '"no", "rejected": "yes"', 1))
    edited = _params(args("pairs.jsonl"))
    assert edited.run.name != first.run.name and dataclasses.replace(edited, run=first.run) == first
    assert own_params(edited) == edited  # applied once only
    # a small model file: its bytes count, not its time (a re-export of the same model is the same run)
    os.utime(model / "config.json", ns=(1, 1))
    assert _params(args("pairs.jsonl")) == edited
    (model / "config.json").write_text('{"hidden_size": 8}')
    retrained = _params(args("pairs.jsonl"))
    assert retrained.run.name != edited.run.name
    # a file above the content limit (a checkpoint shard): its size and modification time count
    monkeypatch.setattr(userfiles, "CONTENT_LIMIT", 0)
    before = _params(args("pairs.jsonl")).run.name
    os.utime(model / "config.json", ns=(2, 2))
    assert _params(args("pairs.jsonl")).run.name != before
    monkeypatch.setattr(userfiles, "CONTENT_LIMIT", 64 << 20)
    # a saved datasets folder as --data: its files count too
    folder = tmp_path / "pairs_ds"
    save_pairs(pd.DataFrame({"pair_id": ["a", "b"], "prompt": ["p", "q"], "chosen": ["x", "y"],
                             "rejected": ["u", "v"]}), str(folder))
    ds = _params(args("pairs_ds"))
    assert ds.run.name.startswith("pairs_ds-") and ds.run.name != "pairs_ds"
    (folder / "extra.txt").write_text("changed")
    assert _params(args("pairs_ds")).run.name != ds.run.name
    gz = tmp_path / "more.jsonl.gz"
    gz.write_bytes(gzip.compress(data.read_bytes()))
    assert _params(args("more.jsonl.gz")).run.name.startswith("more-")  # the format's suffixes left out
    # the built-in world and hub ids: no fingerprint, run folders as before
    assert _params(build_parser().parse_args(["score"])).run.name == "tiny"
    hub = _params(args("pairs.jsonl", "org/some-hub-model"))
    assert hub.run.name.startswith("pairs-") and hub.run.name not in (first.run.name, edited.run.name)


def test_ctrl_c_after_a_finished_loop_does_not_name_its_last_chunk(capsys, monkeypatch):
    """A loop that finished earlier in the command (every chunk scored, then the reward model trains
    when Ctrl-C comes) is not where a rerun resumes."""
    from tifkit import cli, io

    monkeypatch.setattr(io, "PROGRESS", {"what": "chunks", "done": 4, "total": 4})
    monkeypatch.setattr(cli, "PROGRESS", io.PROGRESS)

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_score", interrupted)
    err = _sentence(capsys, ["score"], code=130)
    assert err == "tifkit: error: interrupted; rerun the same command to resume (finished stages and chunks are kept)."
    io.PROGRESS.update(done=2)
    assert _sentence(capsys, ["score"], code=130).endswith("resume from 2 of 4 chunks.")


def test_a_model_or_file_that_fails_to_load_leaves_no_run_folder(tmp_path, capsys, toy):
    """The run folder is made once the tokenizer and the data have loaded, so a typo in --model or a
    file of bad rows leaves the run root as it was."""
    root = tmp_path / "runs"
    missing = ["score", "--data", str(ROOT / "examples" / "pairs.jsonl"), "--model", str(tmp_path / "no-such-model"),
               *toy.cli(root=root)]
    assert "does not exist" in _sentence(capsys, missing)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "same", "rejected": "same"}) + "\n")
    assert "identical" in _sentence(capsys, ["score", "--data", str(bad), *toy.cli(root=root)])
    assert not root.exists() or not [p for p in root.iterdir() if p.name != "cache"], sorted(root.rglob("*"))
