"""Fault injection: damaged caches are detected and recomputed to the same bytes, kills (SIGKILL at
chosen moments) resume to the same bytes, two processes save one stage folder safely, a judge that
drips its reply is cut off at the deadline, and a failed judging run leaves no current-looking summary."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tifkit import TifkitError
from tifkit.io import STAGE_FILE, CorruptCache, read_verified, save_stage, stage_complete, sweep_temps
from tifkit.losses import Objective
from tifkit.models import ModelParams, build_tiny_model
from tifkit.scores import ScoreParams, run_scoring
from tifkit.tokenizer import build_char_tokenizer
from tifkit.world import WorldConfig, build_world

from _fake_llm import FakeServer

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
BETA = 0.5
PARAMS = ScoreParams(chunk_size=12, batch_size=8)  # 36 pairs -> 3 chunks
CPU = ModelParams(device="cpu")


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def flip_byte(path: Path, where: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0x40
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def sub_env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    world = build_world(WorldConfig(n_train=36, n_val=10, n_sft=10, n_test=5, n_rm=5), seed=0)
    tok = build_char_tokenizer()
    ref = build_tiny_model("llama", tok, seed=0, hidden_size=32, num_layers=2)
    policy, val_model = copy.deepcopy(ref), copy.deepcopy(ref)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m, s in ((policy, 0.02), (val_model, 0.03)):
            for p in m.parameters():
                p.add_(s * torch.randn(p.shape, generator=g))
    for name, m in (("ref", ref), ("policy", policy), ("val", val_model)):
        save_stage(m, tok, root / "models" / name)
    world.train.to_parquet(root / "train.parquet", index=False)
    world.val.to_parquet(root / "val.parquet", index=False)
    return dict(root=root, train=pd.read_parquet(root / "train.parquet"), val=pd.read_parquet(root / "val.parquet"))


def run_here(setup, work: Path) -> Path:
    dirs = {k: setup["root"] / "models" / k for k in ("policy", "ref", "val")}
    return run_scoring(dirs, setup["train"], setup["val"], PARAMS, Objective("sigmoid", BETA, "val_loss"), work / "scores.parquet",
                       work / "work", CPU, show_progress=False)


def computed(work: Path) -> list[str]:
    log = work / "work" / "chunks.log"
    return [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def baseline(setup):
    out = run_here(setup, setup["root"] / "baseline")
    return sha(out)


# ------------------------------------------------------------------------------------- damaged caches
def test_damaged_score_chunks_and_table_are_recomputed_to_the_same_bytes(setup, baseline, tmp_path, capsys):
    out = run_here(setup, tmp_path)
    assert sha(out) == baseline
    work = tmp_path / "work"
    c0, c1, c2 = (work / f"chunk-{c:05d}.parquet" for c in range(3))

    # one value of `irm` changed in a file that still parses (the checksum in it is the old one)
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = read_verified(c0)
    df = t.to_pandas()
    df.loc[3, "irm"] = np.nextafter(df.loc[3, "irm"], np.inf)
    tampered = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(t.schema.metadata)
    pq.write_table(tampered, c0)  # same metadata (old checksum, right key and pair_ids), one value off
    with pytest.raises(CorruptCache):
        read_verified(c0)
    truncate(c1)  # a chunk cut short
    before = read_verified(c2)
    flip_byte(c2, 0.4)  # a flipped byte in the middle of a chunk
    try:  # where the byte lands decides whether the values change (a data page) or not (page statistics)
        harmless = read_verified(c2).equals(before)
    except CorruptCache:
        harmless = False
    truncate(out)  # the merged table cut short
    n = len(computed(tmp_path))
    out = run_here(setup, tmp_path)
    # every damaged chunk whose values changed is recomputed; a flip that leaves every value as it was
    # may be kept (it reads back identical, so nothing is silently wrong)
    want = [c0.name, c1.name] + ([] if harmless else [c2.name])
    assert sorted(computed(tmp_path)[n:]) == want
    assert read_verified(c2).equals(before)
    assert sha(out) == baseline
    assert "recomputing" in capsys.readouterr().out


def test_damaged_reference_logprobs_are_recomputed(setup, baseline, tmp_path, capsys):
    run_here(setup, tmp_path)
    files = sorted((tmp_path / "work" / "ref-logps").glob("logps-*.npz"))
    assert len(files) == 4  # D_val and the three chunks
    truncate(files[0])
    flip_byte(files[1], 0.7)
    stamps = {f.name: f.stat().st_mtime_ns for f in files[2:]}
    for f in (tmp_path / "work").glob("chunk-*.parquet"):
        f.unlink()  # the chunks read the cached log-probs again
    out = run_here(setup, tmp_path)
    assert sha(out) == baseline
    assert "recomputing" in capsys.readouterr().out
    for f in files:  # the damaged files were rewritten and read back; the others were untouched
        with np.load(f, allow_pickle=False) as z:
            assert {"chosen", "rejected", "checksum"} <= set(z.files)
    assert {f.name: f.stat().st_mtime_ns for f in files[2:]} == stamps


def test_damaged_generation_cache_is_regenerated(tmp_path, capsys):
    from tifkit.evaluate import cached_generate

    tok = build_char_tokenizer()
    model = build_tiny_model("llama", tok, seed=0, hidden_size=32, num_layers=1)
    prompts = ["sort cba:", "sort fed:", "sort ba:"]
    gen = {"max_new_tokens": 4, "batch_size": 2}
    first = cached_generate(model, tok, prompts, gen, tmp_path, "m", show_progress=False)
    (path,) = tmp_path.glob("gen-*.parquet")
    for damage in (truncate, lambda p: flip_byte(p, 0.5)):
        damage(path)
        assert cached_generate(model, tok, prompts, gen, tmp_path, "m", show_progress=False) == first
        assert "generation cache" in capsys.readouterr().err
        read_verified(path)  # rewritten whole


def test_stage_folders_are_verified(tmp_path, capsys):
    tok = build_char_tokenizer()
    model = build_tiny_model("llama", tok, seed=0, hidden_size=32, num_layers=1)
    out = save_stage(model, tok, tmp_path / "stage", extra={"log": pd.DataFrame({"x": [1.0]})}, info={"name": "t"})
    info = json.loads((out / STAGE_FILE).read_text())
    assert info["name"] == "t" and "model.safetensors" in info["files"] and "log.parquet" in info["files"]
    assert stage_complete(out)
    weights = out / "model.safetensors"
    good = weights.read_bytes()
    truncate(weights)
    assert not stage_complete(out)
    assert "fails its checksum" in capsys.readouterr().err
    weights.write_bytes(good)
    flip_byte(weights, 0.9)
    assert not stage_complete(out)
    weights.write_bytes(good)
    assert stage_complete(out)
    (out / STAGE_FILE).unlink()  # killed before stage.json: not done, whatever else is there
    assert not stage_complete(out)
    save_stage(model, tok, out, info={"name": "t"})  # redone in place
    assert stage_complete(out) and sha(weights) == hashlib.sha256(good).hexdigest()
    assert [p.name for p in tmp_path.iterdir()] == ["stage"]  # no temp folders or lock files left beside it


def test_stage_made_by_other_sources_is_reused_with_one_warning(tmp_path, capsys):
    """stage.json records the source hash of the stage-making code (tifkit.pipeline and what it imports);
    a stage made by other code is still reused (caches are keyed by parameters), with one warning per
    foreign source hash that names both hashes and the way out (an empty run root)."""
    from tifkit import io as tio

    tok = build_char_tokenizer()
    model = build_tiny_model("llama", tok, seed=0, hidden_size=16, num_layers=1)
    outs = [save_stage(model, tok, tmp_path / name) for name in ("a", "b", "c")]
    for out in outs:
        recorded = json.loads((out / STAGE_FILE).read_text())["source_hash"]
        assert recorded == tio.running_source_hash() == tio.source_hash(roots=["tifkit.pipeline"])
    assert all(stage_complete(o) for o in outs) and "made by tifkit sources" not in capsys.readouterr().err
    tio._foreign_sources.discard("0123456789abcdef")
    for out in outs[:2]:  # as if older code had made them
        info = json.loads((out / STAGE_FILE).read_text())
        (out / STAGE_FILE).write_text(json.dumps({**info, "source_hash": "0123456789abcdef"}))
    assert stage_complete(outs[0]) and stage_complete(outs[1])  # reused, not redone
    err = capsys.readouterr().err
    assert err.count("made by tifkit sources 0123456789abcdef") == 1 and "empty run root" in err
    assert tio.running_source_hash() in err


def test_temp_files_of_dead_processes_are_swept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "a").mkdir()
    from tifkit.io import _host

    h = _host()
    stale = [tmp_path / f".x.parquet.tmp-{h}-{dead.pid}-abc.tmp", tmp_path / "a" / f".warmup.tmp-{h}-{dead.pid}-q1"]
    stale[0].write_text("half")
    stale[1].mkdir()
    (stale[1] / "model.safetensors").write_text("half")
    live = tmp_path / f".y.parquet.tmp-{h}-{os.getpid()}-abc.tmp"
    other_host = tmp_path / f".z.parquet.tmp-otherhost{h}-{dead.pid}-abc.tmp"  # maybe alive on its machine
    for f in (live, other_host):
        f.write_text("not mine to remove")
    assert sweep_temps(tmp_path) == 2
    assert not any(p.exists() for p in stale) and live.exists() and other_host.exists()


# ----------------------------------------------------------------------------- SIGKILL, then resume
KILLER = textwrap.dedent("""
    import os, signal, sys
    import pandas as pd
    import tifkit.io as tio
    from tifkit.losses import Objective
    from tifkit.models import ModelParams
    from tifkit.scores import ScoreParams, run_scoring
    root, work, point = sys.argv[1], sys.argv[2], sys.argv[3]
    real_replace, calls = os.replace, []

    def replace(src, dst):  # kill -9 at a chosen rename (the n-th file about to land, or just after)
        calls.append(str(dst))
        hit = [c for c in calls if c.endswith(point.split(":")[0])]
        n = int(point.split(":")[1])
        if len(hit) == n and point.endswith(":before"):
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
        if len(hit) == n and point.endswith(":after"):
            os.kill(os.getpid(), signal.SIGKILL)

    tio.os.replace = replace
    dirs = {k: os.path.join(root, "models", k) for k in ("policy", "ref", "val")}
    run_scoring(dirs, pd.read_parquet(os.path.join(root, "train.parquet")), pd.read_parquet(os.path.join(root, "val.parquet")),
                ScoreParams(chunk_size=12, batch_size=8), Objective("sigmoid", 0.5, "val_loss"), os.path.join(work, "scores.parquet"),
                os.path.join(work, "work"), ModelParams(device="cpu"), show_progress=False)
""")


@pytest.mark.parametrize("point", [
    ".npz:1:before",          # while the first reference log-probs land
    "chunk-00002.parquet:1:before",  # while the last chunk lands (test_scores kills after the first)
    "scores.parquet:1:before",       # while the merged table lands
])
def test_sigkill_at_chosen_moments_then_resume_gives_the_same_bytes(setup, baseline, tmp_path, point):
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    proc = subprocess.run([sys.executable, str(script), str(setup["root"]), str(tmp_path), point],
                          env=sub_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (tmp_path / "scores.parquet").exists()
    left = [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
    assert bool(left) == point.endswith(":before")  # killed before a rename: its temporary file is left
    out = run_here(setup, tmp_path)  # the restart
    assert sha(out) == baseline
    assert sweep_temps(tmp_path) == len(left)  # what the dead process left (prepare() runs this on every run)
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


# ------------------------------------------------------------------------ two processes, one stage
SAVER = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from tifkit.io import save_stage
    from tifkit.models import build_tiny_model
    from tifkit.tokenizer import build_char_tokenizer
    tok = build_char_tokenizer()
    model = build_tiny_model("llama", tok, seed=0, hidden_size=16, num_layers=1)
    import os, pathlib, pandas as pd
    out = pathlib.Path(sys.argv[1])
    for i in range(int(sys.argv[2])):  # a new extra file each time: every call really saves and swaps
        save_stage(model, tok, out, extra={f"log-{os.getpid()}-{i}": pd.DataFrame({"i": [i]})}, info={"i": i})
    print("ok")
""")


def test_two_processes_saving_one_stage_never_race(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    out = tmp_path / "stage"
    procs = [subprocess.Popen([sys.executable, str(script), str(out), "15"], env=sub_env(), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    partial = checks = 0
    while any(p.poll() is None for p in procs):  # a reader: the folder it sees is always whole
        try:
            ino = os.stat(out).st_ino
            ok = stage_complete(out, warn=False)
            if os.stat(out).st_ino == ino:  # not swapped while it was being checked
                checks += 1
                partial += not ok
        except OSError:
            pass  # between the two renames of a swap the name is briefly absent
        time.sleep(0.002)
    for p in procs:
        stdout, stderr = p.communicate()
        assert p.returncode == 0 and stdout.strip() == "ok", stderr[-2000:]
    assert stage_complete(out)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert checks > 0 and partial == 0


# ------------------------------------------------------------------------------------ judge deadline
def test_judge_timeout_is_a_total_deadline_against_a_dripping_server():
    from tifkit.judges import LLMJudge

    server = FakeServer(lambda n, msg: (200, "[[A]]", 0.0, {}), drip=0.1)  # ~8 s for the reply; each read quick
    try:
        judge = LLMJudge(server.url, "m", api_key_env="", timeout=1.0, max_retries=1, requests_per_minute=0,
                         concurrency=1, backoff_base=0.01, show_progress=False)
        t0 = time.monotonic()
        verdicts = judge.compare(["p"], ["a"], ["b"])
        took = time.monotonic() - t0
    finally:
        server.close()
    assert verdicts[0].outcome == "error"
    assert judge.stats.n_timeouts == 2 and len(server.calls) == 2  # first order: two attempts, both cut off
    assert took < 2 * 1.0 + 1.5  # two attempts of at most 1 s each, plus slack


def test_failed_judging_leaves_no_current_looking_summary(tmp_path):
    from tifkit.config import EvalParams
    from tifkit.evaluate import evaluate_from_params

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"sort {w}:"}) + "\n" for w in ("cba", "fed")))
    out = tmp_path / "eval"
    ok = EvalParams(prompt_sets=[str(prompts)], n_bootstrap=50)
    scores = iter(range(1000))
    from tifkit.judges import OracleJudge

    evaluate_from_params(ok, ["a", "b"], ["b", "a"], None, out, judge=OracleJudge(lambda p, r: next(scores) % 3),
                         show_progress=False)
    assert (out / "eval_summary.json").exists()

    def broken(p, r):
        raise TifkitError("judge endpoint down")

    with pytest.raises(TifkitError):
        evaluate_from_params(ok, ["a", "b"], ["b", "a"], None, out, judge=OracleJudge(broken), show_progress=False)
    assert not (out / "eval_summary.json").exists()
    table = pd.read_parquet(out / f"eval_{prompts.stem}.parquet")
    assert set(table.verdict) == {"not_judged"}


# ------------------------------------------------------------------ the pipeline: damaged stages, CLI
def test_damaged_stage_weights_and_score_table_are_redone_to_the_same_table(toy, tmp_path, capsys):
    from tifkit.cli import main

    toy.private_copy(tmp_path)  # the shared toy run's stages, copied: damaged here, never in the shared root
    args = ["score", str(ROOT / "params" / "tiny.yaml"), *toy.cli(root=tmp_path)]
    assert main(args) == 0
    table = Path(capsys.readouterr().out.strip().splitlines()[-1])
    digest = sha(table)
    run_dir = table.parents[1]
    (sft,) = (tmp_path / "cache" / "sft").iterdir()
    truncate(run_dir / "models" / "warmup" / "model.safetensors")
    flip_byte(sft / "model.safetensors", 0.8)
    for f in (run_dir / "scores").glob("*.parquet"):
        f.unlink()
    assert main(args) == 0
    cap = capsys.readouterr()
    assert "SFT llama" in cap.out and "DPO stage 'warmup'" in cap.out and "DPO stage 'val'" not in cap.out
    assert cap.err.count("fails its checksum") == 2  # both damaged stages reported, then retrained
    assert sha(table) == digest  # retrained to the same weights, hence the same scores

    truncate(table)  # a cut-short final table is rebuilt, never handed out
    assert main(args) == 0
    cap = capsys.readouterr()
    assert "score table" in cap.err and cap.out.strip().splitlines()[-1] == str(table)
    assert sha(table) == digest


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists(),
                    reason="reads child processes from Linux's /proc/<pid>/task/<pid>/children")
def test_sigterm_to_a_pool_ends_its_workers_too(tmp_path):
    """`kill <pid>` (SIGTERM) of a process running a worker pool (the batch, the family grid, a study) ends
    the pool's worker processes with it, instead of leaving them to run their queued tasks unseen; a
    SIGTERM handler the process had installed runs after that."""
    marker = tmp_path / "own-handler-ran"
    code = ("import pathlib, signal, sys, time\nfrom tifkit.workers import pool_map\n"
            "def own(signum, frame):\n"
            "    pathlib.Path(sys.argv[1]).write_text('yes')\n"
            "    sys.exit(143)\n"
            "signal.signal(signal.SIGTERM, own)\n"
            "pool_map({i: (time.sleep, (120,)) for i in range(4)}, 2, 'sleep', show_progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(marker)], env=sub_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        workers: list[int] = []
        while len(workers) < 2:  # both workers started (the resource tracker is a child too)
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the pool's workers did not start within 120 s"
            workers = [c for c in _children(proc.pid) if "spawn_main" in _cmdline(c)]
            time.sleep(0.2)
        time.sleep(1.0)  # the workers are in their tasks
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        deadline = time.time() + 30
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not [w for w in workers if _alive(w)], "worker processes outlived the killed pool"
        assert marker.read_text() == "yes"  # the process's own handler ran too
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
