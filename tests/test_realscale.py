"""Real scale on a CPU: real-architecture shapes (published configs, random weights), bf16 IF against
fp32 IF, the memory estimate and its error, device resolution, the shipped accelerate configs, and
the CPU mode of the GPU benchmark."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from tifkit import TifkitError
from tifkit.config import ScoreParams, SelectParams, load_params
from tifkit.influence import cast_for_scoring, influence_loop, influence_scores
from tifkit.memory import check_memory, estimate_for_models, estimate_scoring_memory
from tifkit.logprobs import pair_logprobs
from tifkit.losses import Objective
from tifkit.models import resolve_device, tiny_config
from tifkit.select import select
from tifkit.shapes import SHAPES, build_shape, count_params, perturbed_copy, shape_config, synthetic_pairs

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
BETA = 0.1
OBJ = Objective("sigmoid", BETA, "val_loss")  # DPO at BETA, the paper's IF


def _params_by_hand(c) -> int:
    """Parameter count of a decoder config, written out independently of transformers."""
    h, L, V, inter = c.hidden_size, c.num_hidden_layers, c.vocab_size, c.intermediate_size
    emb = V * h * (1 if c.tie_word_embeddings else 2)
    if c.model_type == "gpt_neox":  # fused qkv and dense with biases, MLP with biases, two LayerNorms
        layer = (3 * h * h + 3 * h) + (h * h + h) + (h * inter + inter) + (inter * h + h) + 2 * 2 * h
        return emb + L * layer + 2 * h
    q, kv = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    layer = h * q + 2 * h * kv + q * h + 3 * h * inter + 2 * h
    if c.model_type == "qwen3":
        layer += 2 * c.head_dim  # q_norm, k_norm
    return emb + L * layer + h


def test_shapes_have_the_released_parameter_counts():
    """The published values give exactly the released checkpoints' sizes (a wrong width, depth,
    vocabulary, head_dim or tying changes the count), counted by hand and, for one, by transformers."""
    for name, shape in SHAPES.items():
        assert _params_by_hand(shape_config(name)) == shape.published_params, name
    assert count_params("qwen3-0.6b") == SHAPES["qwen3-0.6b"].published_params
    cfg = shape_config("qwen3-8b", num_layers=2, vocab_size=1000)
    assert (cfg.num_hidden_layers, cfg.vocab_size, cfg.hidden_size, cfg.head_dim) == (2, 1000, 4096, 128)


def test_synthetic_pairs_have_ultrafeedback_like_lengths():
    tok = synthetic_pairs(400, 5000, seed=3)
    p = np.array([len(x) for x in tok.prompt_ids])
    r = np.array([len(x) for x in tok.chosen_ids + tok.rejected_ids])
    assert 130 < np.median(p) < 170 and p.min() >= 20 and p.max() <= 600
    assert r.min() >= 250 and r.max() <= 400 and 300 < r.mean() < 350
    ids = np.concatenate([np.array(x) for x in tok.prompt_ids])
    assert ids.min() >= 3 and ids.max() < 5000
    small = synthetic_pairs(400, 5000, seed=3, scale=0.1)
    assert np.median([len(x) for x in small.prompt_ids]) == pytest.approx(np.median(p) * 0.1, rel=0.1)


@pytest.mark.parametrize("name", ["qwen3-0.6b"])
def test_reduced_depth_real_shape_bf16_if(name):
    """One layer of a real shape (full width, reduced vocabulary), bf16 weights: the batched IF
    (whose first batch is checked against autograd inside) tracks the float32 loop on the same model."""
    ref = build_shape(name, num_layers=1, vocab_size=256, dtype=torch.float32, seed=0)
    policy = perturbed_copy(ref, 0.05, seed=1)
    train, val = synthetic_pairs(6, 256, 0, scale=0.03), synthetic_pairs(3, 256, 1, scale=0.03)
    exact = influence_loop(policy, train, pair_logprobs(ref, train, show_progress=False), val,
                           pair_logprobs(ref, val, show_progress=False), OBJ, show_progress=False)
    p16, r16 = cast_for_scoring(policy, "bfloat16"), cast_for_scoring(ref, "bfloat16")
    assert next(p16.parameters()).dtype == torch.bfloat16 and next(policy.parameters()).dtype == torch.float32
    got = influence_scores(p16, r16, train, val, objective=OBJ, batch_size=3, show_progress=False)
    assert np.corrcoef(got, exact)[0, 1] > 0.99
    assert np.abs(got - exact).max() < 0.1 * np.abs(exact).max()


def test_bf16_if_ranks_pairs_like_fp32():
    """On a small Llama (hidden 128, 2 layers), IF from bf16 models (bf16 GEMMs, float32 g_val and
    accumulation) ranks 256 pairs like float32 IF, and the TIF selections overlap."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    ref = AutoModelForCausalLM.from_config(tiny_config("llama", 300, hidden_size=128, num_layers=2, num_heads=4,
                                                       max_positions=256)).eval()
    policy = perturbed_copy(ref, 0.1, seed=1)
    train, val = synthetic_pairs(256, 300, 0, scale=0.05), synthetic_pairs(32, 300, 1, scale=0.05)
    f32 = influence_scores(policy, ref, train, val, objective=OBJ, batch_size=32, show_progress=False)
    b16 = influence_scores(cast_for_scoring(policy, "bfloat16"), cast_for_scoring(ref, "bfloat16"), train, val,
                           objective=OBJ, batch_size=32, show_progress=False)
    assert spearmanr(f32, b16).correlation > 0.99
    tif = lambda x: select(pd.DataFrame({"if": x}), SelectParams(rule="tif", keep=0.64)).mask  # noqa: E731
    m32, m16 = tif(f32), tif(b16)
    assert (m32 & m16).sum() / m32.sum() > 0.95
    assert not np.allclose(f32, b16, rtol=1e-4)  # bf16 really ran


def test_memory_estimate_and_budget_error(capsys):
    """The estimate counts the weights exactly, grows with batch and length, says 8B+LoRA fits 80 GB
    at the kit's batch while full fine-tuning does not, and a small budget stops scoring first."""
    from tifkit.scores import score_table
    from tifkit.tokenizer import build_char_tokenizer
    from transformers import AutoModelForCausalLM

    tok = build_char_tokenizer()
    torch.manual_seed(0)
    cfg = tiny_config("llama", len(tok), 64, 2, 4, 64, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id)
    models = [AutoModelForCausalLM.from_config(cfg) for _ in range(3)]
    est = estimate_for_models(models[0], models[1:], batch_pairs=8, seq_len=40)
    n = sum(p.numel() for p in models[0].parameters())
    assert est.weights == 3 * n * 4 and est.gradients >= n * 4
    bigger = estimate_for_models(models[0], models[1:], batch_pairs=16, seq_len=80)
    assert bigger.activations == 4 * est.activations and bigger.weights == est.weights

    c8 = shape_config("llama-3.1-8b")
    lora = estimate_scoring_memory(c8, 8_030_261_248, 42_000_000, torch.bfloat16, batch_pairs=4, seq_len=600, n_models=1)
    full = estimate_scoring_memory(c8, 8_030_261_248, 8_030_261_248, torch.bfloat16, batch_pairs=4, seq_len=600,
                                   n_models=1)
    assert lora.total < 80 * 2**30 < full.total
    half = (lora.weights + lora.gradients + (lora.activations + lora.logits) / 2) / 2**30
    with pytest.raises(TifkitError, match="lower score.batch_size from 4 to 2"):
        check_memory(lora, "cpu", budget_gb=half + 0.01, batch_pairs=4, say=None)
    with pytest.raises(TifkitError, match="more memory, LoRA"):
        check_memory(full, "cpu", budget_gb=80, batch_pairs=4, say=None)

    rng = np.random.default_rng(0)
    df = lambda k: pd.DataFrame({"pair_id": [f"p{i}" for i in range(k)],  # noqa: E731
                                 "prompt": ["sort abc:"] * k, "chosen": ["abc"] * k,
                                 "rejected": ["".join(rng.choice(list("abc"), 3)) for _ in range(k)]})
    with pytest.raises(TifkitError, match="needs about .* GiB but has budget 1e-05 GiB"):
        score_table(*models, tok, df(6), df(3), ScoreParams(batch_size=4, memory_budget_gb=1e-5), objective=OBJ,
                    show_progress=True)
    assert "memory estimate for scoring" in capsys.readouterr().out
    table = score_table(*models, tok, df(6), df(3), ScoreParams(batch_size=4, memory_budget_gb=1.0, dtype="bfloat16"),
                        objective=OBJ, show_progress=False)
    assert len(table) == 6 and np.isfinite(table["if"]).all()
    assert next(models[0].parameters()).dtype == torch.float32  # score.dtype casts copies


def test_device_auto(monkeypatch):
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(TifkitError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(TifkitError, match="not a device"):
        resolve_device("gpu0")
    for path in sorted((ROOT / "params").glob("*.yaml")):
        assert load_params(path).model.device == "auto", path.name


@pytest.mark.parametrize("name,kind", [("multi_gpu", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero3", "DEEPSPEED")])
def test_accelerate_configs_parse(name, kind):
    """accelerate's own loader reads the shipped files; the 8B params files point to them."""
    from accelerate.commands.config.config_args import load_config_from_file

    path = ROOT / "params" / "accelerate" / f"{name}.yaml"
    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type.name == kind and cfg.mixed_precision == "bf16" and cfg.num_processes >= 2
    if kind == "FSDP":
        assert cfg.fsdp_config["fsdp_sharding_strategy"] == "FULL_SHARD"
        assert cfg.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    if kind == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == 3
    for fam in ("llama-3.1-8b", "qwen3-8b"):
        assert "params/accelerate/" in (ROOT / "params" / f"{fam}.yaml").read_text()


def test_gpu_check_cpu_mode(tmp_path):
    """bench/gpu_check.sh --cpu: the real-shape benchmark at reduced depth, width and lengths runs
    end to end and writes its section (to a scratch copy of PERFORMANCE.md). With 4 training pairs
    (--pairs 4): the benchmark runs in bfloat16, and a CPU without AVX512-BF16 or AMX (the 2-core
    development machine of 2026-12-02 has AVX2 only) multiplies bf16 matrices in a slow generic
    kernel, so the table's 16 pairs took 396 s there while a CPU with those units needs seconds."""
    out = tmp_path / "PERFORMANCE.md"
    out.write_text("# Performance\n")
    env = {**os.environ, "TIFKIT_PERF_OUT": str(out), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu", "--configs", "qwen3-0.6b", "--pairs", "4"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)  # correctness, not time: a loaded 2-core box needs minutes
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    text = out.read_text()
    assert "<!-- bench:realscale-cpu -->" in text and "qwen3-0.6b" in text
    assert "exact IF / LossDiff-IRM" in text and "projected over 61,135 pairs" in text


# ----------------------------------------------------------------------------------------------------
# On a GPU (bench/gpu_check.sh runs these; skipped without CUDA)
# ----------------------------------------------------------------------------------------------------
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_gpu_if_matches_the_loop():
    """On the GPU, 2 layers of Llama-3.2-1B (full width and vocabulary): float32 batched IF equals the
    float32 loop (TF32 off), and bf16 batched IF tracks it."""
    torch.backends.cuda.matmul.allow_tf32 = False
    ref = build_shape("llama-3.2-1b", num_layers=2, dtype=torch.float32, device="cuda", seed=0)
    policy = perturbed_copy(ref, 0.05, seed=1)
    train, val = synthetic_pairs(8, 128256, 0, scale=0.2), synthetic_pairs(4, 128256, 1, scale=0.2)
    rtr, rva = pair_logprobs(ref, train, show_progress=False), pair_logprobs(ref, val, show_progress=False)
    loop = influence_loop(policy, train, rtr, val, rva, OBJ, show_progress=False)
    fast = influence_scores(policy, (rtr, rva), train, val, objective=OBJ, batch_size=4, show_progress=False)
    np.testing.assert_allclose(fast, loop, rtol=1e-3, atol=1e-3 * np.abs(loop).max())
    b16 = influence_scores(cast_for_scoring(policy, "bfloat16"), (rtr, rva), train, val, objective=OBJ, batch_size=4,
                           show_progress=False)
    assert np.corrcoef(b16, loop)[0, 1] > 0.99


@pytest.mark.gpu
@needs_cuda
def test_gpu_memory_estimate_bounds_the_peak():
    """The kit's estimate is an upper-end one: the measured peak of a bf16 IF pass (4 layers of
    Llama-3.2-1B, full vocabulary, UltraFeedback-like lengths) lies between 30% and 100% of it."""
    from tifkit.influence import ValidationTarget, trainable_parameters, validation_gradient

    cfg = shape_config("llama-3.2-1b", num_layers=4)
    model = build_shape("llama-3.2-1b", num_layers=4, dtype=torch.bfloat16, device="cuda")
    n = sum(p.numel() for p in model.parameters())
    train, val = synthetic_pairs(8, cfg.vocab_size, 0), synthetic_pairs(4, cfg.vocab_size, 1)
    c, r = train.sequence_lengths()
    est = estimate_scoring_memory(cfg, n, sum(p.numel() for _, p in trainable_parameters(model)), torch.bfloat16,
                                  batch_pairs=4, seq_len=int(max(c.max(), r.max())), n_models=1)
    rtr, rva = pair_logprobs(model, train, show_progress=False), pair_logprobs(model, val, show_progress=False)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    g = validation_gradient(model, val, rva, OBJ, batch_size=4)
    ValidationTarget(model, g, OBJ).scores(train, rtr, batch_size=4, verify=False, show_progress=False)
    peak = torch.cuda.max_memory_allocated()
    assert 0.3 * est.total < peak <= est.total, (peak / 2**30, est.describe())
