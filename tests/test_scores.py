"""tifkit.scores: the table's schema, IRM/LossDiff against an independent recomputation, LossDiff as
lr * IF, and the runner: byte-identical output twice and after a SIGKILL and resume. Two accelerate
processes against one: tests/test_score_processes.py, through `tifkit score` as a user launches it
(the same runner underneath)."""
from __future__ import annotations

import copy
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from tifkit import TifkitError
from tifkit.influence import influence_scores
from tifkit.logprobs import pair_logprobs, tokenize_pairs
from tifkit.losses import Objective
from tifkit.models import ModelParams, build_tiny_model
from tifkit.scores import ScoreParams, run_scoring, score_table
from tifkit.select import SelectParams, select
from tifkit.tokenizer import build_char_tokenizer
from tifkit.train import save_stage
from tifkit.world import WorldConfig, build_world

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / "tests" / "_accelerate_score.py"
BETA = 0.5
OBJ = Objective("sigmoid", BETA, "val_loss")  # DPO at BETA, measured as ScoreParams' default if_measure
PARAMS = ScoreParams(chunk_size=16, batch_size=8)  # 60 pairs -> 4 chunks (16, 16, 16, 12)
CPU = ModelParams(device="cpu")


# ----------------------------------------------------------------------------------------------------
# fixtures: a world, a tiny llama and two perturbed copies, saved as checkpoints
# ----------------------------------------------------------------------------------------------------
def perturbed(model, seed, scale=0.02):
    m = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return m


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("scores")
    world = build_world(WorldConfig(n_train=60, n_val=20, n_sft=10, n_test=5, n_rm=5), seed=0)
    tok = build_char_tokenizer()
    ref = build_tiny_model("llama", tok, seed=0, hidden_size=32, num_layers=2)
    policy = perturbed(ref, 1)
    val_model = perturbed(policy, 2)
    for name, m in (("ref", ref), ("policy", policy), ("val", val_model)):
        save_stage(m, tok, root / "models" / name)
    # the runner's inputs go through Parquet, as the subprocesses read them
    world.train.to_parquet(root / "train.parquet", index=False)
    world.val.to_parquet(root / "val.parquet", index=False)
    train, val = pd.read_parquet(root / "train.parquet"), pd.read_parquet(root / "val.parquet")
    return dict(root=root, tok=tok, ref=ref, policy=policy, val_model=val_model, train=train, val=val)


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_here(setup, out, work, params=PARAMS):
    dirs = {k: setup["root"] / "models" / k for k in ("policy", "ref", "val")}
    return run_scoring(dirs, setup["train"], setup["val"], params, OBJ, out, work, CPU, show_progress=False)


def helper_args(setup, out, work):
    r = setup["root"]
    return [str(HELPER), "--models", str(r / "models"), "--train", str(r / "train.parquet"), "--val",
            str(r / "val.parquet"), "--out", str(out), "--work", str(work), "--chunk-size", "16", "--batch-size", "8",
            "--beta", str(BETA)]


def sub_env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def computed_chunks(work) -> list[str]:
    log = Path(work) / "chunks.log"
    return [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(scope="module")
def reference_run(setup):
    """One fresh single-process run: (out path, its sha256)."""
    out = run_here(setup, setup["root"] / "ref-run" / "scores.parquet", setup["root"] / "ref-run" / "work")
    return out, sha(out)


# ----------------------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------------------
SCORE_DTYPES = {
    "logp_policy_chosen": "float64", "logp_policy_rejected": "float64", "logp_ref_chosen": "float64",
    "logp_ref_rejected": "float64", "logp_val_chosen": "float64", "logp_val_rejected": "float64",
    "irm": "float64", "loss_policy": "float64", "loss_val": "float64", "lossdiff": "float64", "if": "float64",
    "tif": "bool", "prompt_tokens": "int64", "chosen_tokens": "int64", "rejected_tokens": "int64", "trl_dropped": "bool",
}


def test_columns_dtypes_and_pass_through(setup, tmp_path):
    train = setup["train"]
    t = score_table(setup["policy"], setup["ref"], setup["val_model"], setup["tok"], train, setup["val"], PARAMS,
                    OBJ, cache_dir=tmp_path, show_progress=False, select_params=SelectParams(keep=0.64))
    gt = [c for c in train.columns if c.startswith("gt_")]
    assert list(t.columns) == ["pair_id", *SCORE_DTYPES, "score_chosen", "score_rejected", *gt]
    assert {c: str(t[c].dtype) for c in SCORE_DTYPES} == SCORE_DTYPES
    assert t.pair_id.tolist() == train.pair_id.tolist()
    pd.testing.assert_frame_equal(t[["score_chosen", "score_rejected", *gt]], train[["score_chosen", "score_rejected", *gt]])
    assert np.isfinite(t[[c for c, d in SCORE_DTYPES.items() if d == "float64"]].to_numpy()).all()
    # tif is select.py's rule, and the reference log-probs went through the cache
    assert (t.tif.to_numpy() == select(t, SelectParams(rule="tif", keep=0.64)).mask).all()
    assert t.tif.sum() == round(0.64 * len(t))
    # independently: the TIF pairs are exactly those whose IF is between the q_lo and q_hi order
    # statistics of a centred band, i.e. no excluded pair lies strictly inside [min, max] of the kept IF
    kept, rest = t["if"][t.tif], t["if"][~t.tif]
    assert not ((rest > kept.min()) & (rest < kept.max())).any()
    n_below, n_above = int((rest < kept.min()).sum()), int((rest > kept.max()).sum())
    assert abs(n_below - n_above) <= 1  # the band is centred
    assert list(tmp_path.glob("logps-*.npz"))
    # IF agrees with influence_scores on the whole set (g_val once, chunked batches)
    tr, va = tokenize_pairs(setup["tok"], train), tokenize_pairs(setup["tok"], setup["val"])
    want = influence_scores(setup["policy"], setup["ref"], tr, va, OBJ, batch_size=8, show_progress=False)
    np.testing.assert_allclose(t["if"], want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    # no gt_ column is read: dropping them leaves every score unchanged
    t2 = score_table(setup["policy"], setup["ref"], setup["val_model"], setup["tok"], train.drop(columns=gt),
                     setup["val"], PARAMS, OBJ, cache_dir=tmp_path, show_progress=False)
    # ... and without select parameters no `tif` column is made (the select layer derives it, once)
    assert "tif" not in t2.columns
    pd.testing.assert_frame_equal(t2, t.drop(columns=[*gt, "tif"]))


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge"])
def test_irm_lossdiff_match_independent_arithmetic(setup, loss_type):
    params = ScoreParams(chunk_size=16, batch_size=8, influence="none")
    t = score_table(setup["policy"], setup["ref"], setup["val_model"], setup["tok"], setup["train"], None, params,
                    Objective(loss_type, BETA), show_progress=False)
    assert "if" not in t.columns and "tif" not in t.columns
    tok = tokenize_pairs(setup["tok"], setup["train"])
    pc, pr = pair_logprobs(setup["policy"], tok, batch_size=64, show_progress=False)
    rc, rr = pair_logprobs(setup["ref"], tok, batch_size=64, show_progress=False)
    vc, vr = pair_logprobs(setup["val_model"], tok, batch_size=64, show_progress=False)
    h_pol = BETA * ((pc - rc) - (pr - rr))
    h_val = BETA * ((vc - rc) - (vr - rr))
    loss = (lambda h: np.log1p(np.exp(-h))) if loss_type == "sigmoid" else (lambda h: np.maximum(0.0, 1.0 - h))
    close = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t.logp_policy_chosen, pc, **close)
    np.testing.assert_allclose(t.logp_ref_rejected, rr, **close)
    np.testing.assert_allclose(t.logp_val_chosen, vc, **close)
    np.testing.assert_allclose(t.irm, h_pol, **close)
    np.testing.assert_allclose(t.loss_policy, loss(h_pol), **close)
    np.testing.assert_allclose(t.loss_val, loss(h_val), **close)
    np.testing.assert_allclose(t.lossdiff, loss(h_pol) - loss(h_val), **close)
    # and within the table, the definitions hold exactly
    np.testing.assert_array_equal(t.lossdiff, t.loss_policy - t.loss_val)
    assert (t.prompt_tokens.to_numpy() == [len(x) for x in tok.prompt_ids]).all()
    assert (t.rejected_tokens.to_numpy() == [len(x) for x in tok.rejected_ids]).all()


def _seq_logp(model, prompt_ids, completion_ids):
    """log pi(completion | prompt), one unpadded sequence, written out independently of tifkit."""
    ids = torch.tensor([prompt_ids + completion_ids])
    logp = F.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    pos = torch.arange(len(prompt_ids) - 1, ids.shape[1] - 1)
    return logp[pos, ids[0, pos + 1]].sum()


def test_lossdiff_is_lr_times_if_for_a_gradient_step(setup):
    """theta_val = theta - lr * g_val by a manual SGD step on the mean validation DPO loss."""
    policy, ref, lr = setup["policy"], setup["ref"], 1e-3
    vt = tokenize_pairs(setup["tok"], setup["val"])
    policy.zero_grad()
    losses = []
    for p, c, r in zip(vt.prompt_ids, vt.chosen_ids, vt.rejected_ids):
        with torch.no_grad():
            rc, rr = _seq_logp(ref, p, c), _seq_logp(ref, p, r)
        h = BETA * ((_seq_logp(policy, p, c) - rc) - (_seq_logp(policy, p, r) - rr))
        losses.append(-F.logsigmoid(h))
    torch.stack(losses).mean().backward()
    theta_val = copy.deepcopy(policy)
    with torch.no_grad():
        for q, g in zip(theta_val.parameters(), policy.parameters()):
            q.sub_(lr * g.grad)
    policy.zero_grad()
    t = score_table(policy, ref, theta_val, setup["tok"], setup["train"], setup["val"], PARAMS, OBJ, show_progress=False)
    ld, lif = t.lossdiff.to_numpy(), lr * t["if"].to_numpy()
    assert np.corrcoef(ld, lif)[0, 1] > 0.999  # 0.999999 here
    slope = (ld @ lif) / (lif @ lif)
    assert 0.98 < slope < 1.02, slope  # 1.0006 here: the second-order term is small at this lr


def test_influence_methods_agree(setup):
    args = (setup["policy"], setup["ref"], setup["val_model"], setup["tok"], setup["train"], setup["val"])
    batched = score_table(*args, PARAMS, OBJ, show_progress=False)["if"].to_numpy()
    loop = score_table(*args, ScoreParams(chunk_size=16, influence="loop"), OBJ, show_progress=False)["if"].to_numpy()
    np.testing.assert_allclose(loop, batched, rtol=1e-4, atol=1e-5 * np.abs(batched).max())
    proj = ScoreParams(chunk_size=16, influence="projected", project_dim=2048, project_seed=3)
    p1 = score_table(*args, proj, OBJ, show_progress=False)["if"].to_numpy()
    assert np.corrcoef(p1, batched)[0, 1] > 0.9
    np.testing.assert_array_equal(p1, score_table(*args, proj, OBJ, show_progress=False)["if"].to_numpy())


def test_bad_inputs_raise_one_clear_error(setup):
    args = (setup["policy"], setup["ref"], setup["val_model"], setup["tok"])
    with pytest.raises(TifkitError, match="pair_id"):
        score_table(*args, setup["train"].drop(columns=["pair_id"]), setup["val"], PARAMS, OBJ, show_progress=False)
    with pytest.raises(TifkitError, match="project_dim"):
        score_table(*args, setup["train"], setup["val"], ScoreParams(influence="projected"), OBJ, show_progress=False)
    with pytest.raises(TypeError, match="`objective` takes a tifkit.losses.Objective"):
        score_table(*args, setup["train"], setup["val"], PARAMS, BETA, show_progress=False)  # a bare beta


# ----------------------------------------------------------------------------------------------------
# the runner
# ----------------------------------------------------------------------------------------------------
def test_runner_is_byte_identical_and_matches_score_table(setup, reference_run, tmp_path):
    out, digest = reference_run
    again = run_here(setup, tmp_path / "scores.parquet", tmp_path / "work")
    assert sha(again) == digest
    assert computed_chunks(tmp_path / "work") == [f"chunk-{c:05d}.parquet" for c in range(4)]
    # a rerun in the same folders computes nothing and rewrites the same bytes
    run_here(setup, tmp_path / "scores.parquet", tmp_path / "work")
    assert len(computed_chunks(tmp_path / "work")) == 4 and sha(again) == digest
    # a chunk file of other pairs is recomputed, not trusted
    work = tmp_path / "work"
    (work / "chunk-00001.parquet").write_bytes((work / "chunk-00000.parquet").read_bytes())
    run_here(setup, tmp_path / "scores.parquet", work)
    assert computed_chunks(work)[4:] == ["chunk-00001.parquet"] and sha(again) == digest
    # same numbers as the in-memory API on the same checkpoints
    from tifkit.models import load_model

    m = {k: load_model(str(setup["root"] / "models" / k), CPU)[0] for k in ("policy", "ref", "val")}
    t = score_table(m["policy"], m["ref"], m["val"], setup["tok"], setup["train"], setup["val"], PARAMS, OBJ,
                    show_progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out), t, check_exact=True)


@pytest.mark.slow
def test_sigkill_then_resume_skips_finished_chunks(setup, reference_run, tmp_path):
    work, out = tmp_path / "work", tmp_path / "scores.parquet"
    proc = subprocess.Popen([sys.executable, *helper_args(setup, out, work), "--chunk-delay", "3"], env=sub_env(),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (work / "chunk-00000.parquet").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "no chunk file after 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in work.glob("chunk-*.parquet")}
    assert 1 <= len(done) < 4
    before = computed_chunks(work)
    run_here(setup, out, work)  # the restart
    after = computed_chunks(work)[len(before):]
    assert sorted(after) == sorted(set(f"chunk-{c:05d}.parquet" for c in range(4)) - set(done))
    assert {n: (work / n).stat().st_ino for n in done} == {n: v[0] for n, v in done.items()}
    assert {n: (work / n).stat().st_mtime_ns for n in done} == {n: v[1] for n, v in done.items()}
    assert sha(out) == reference_run[1]
