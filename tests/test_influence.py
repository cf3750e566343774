"""tifkit.influence: the exact loop against independent computations, the batched hook path against
the loop on four model families, the JL projection's error bound, and IF as the first-order LossDiff."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from tifkit import TifkitError
from tifkit.influence import (
    RandomProjection,
    batched_influence,
    dpo_loss_per_pair,
    flat_pair_gradient,
    influence_loop,
    influence_scores,
    measure_losses,
    project_vector,
    projected_pair_gradients,
    trainable_parameters,
    validation_gradient,
)
from tifkit.logprobs import pair_logprobs, tokenize_pairs
from tifkit.losses import Objective
from tifkit.tokenizer import build_char_tokenizer

torch.set_num_threads(1)
BETA = 0.5
OBJ = Objective("sigmoid", BETA, "val_loss")  # DPO at BETA, the paper's IF
# Llama's RMSNorm rounds its input to float32 even in a float64 model, so padded (batched) and
# unpadded (loop) runs of the same pair agree to ~1e-6 relative there, and to ~1e-12 elsewhere.
RTOL = {"llama": 1e-5, "llama_tied": 1e-5, "lora": 1e-5, "gpt2": 1e-8, "neox": 1e-8}


# ----------------------------------------------------------------------------------------------------
# Tiny models and data
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


def random_pairs(n, seed):
    rng = np.random.default_rng(seed)

    def text(lo, hi):
        return "".join(rng.choice(list("abcdefgh ."), int(rng.integers(lo, hi))))

    return pd.DataFrame({"prompt": [text(3, 10) for _ in range(n)], "chosen": [text(1, 14) for _ in range(n)],
                         "rejected": [text(1, 14) for _ in range(n)]})


@pytest.fixture(scope="module")
def data(tok):
    return tokenize_pairs(tok, random_pairs(16, 0)), tokenize_pairs(tok, random_pairs(6, 1))


def build(family, tok, seed=0):
    from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig,
                              LlamaForCausalLM)

    torch.manual_seed(seed)
    V = len(tok)
    if family in ("llama", "llama_tied", "lora"):
        cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, vocab_size=V, pad_token_id=0, tie_word_embeddings=family == "llama_tied")
        return LlamaForCausalLM(cfg)
    if family == "gpt2":  # Conv1D layers, learned position embeddings, tied head, LayerNorm with bias
        return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=V, n_positions=64, pad_token_id=0,
                                          bos_token_id=1, eos_token_id=2))
    if family == "neox":
        return GPTNeoXForCausalLM(GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                num_attention_heads=4, vocab_size=V, pad_token_id=0))
    raise ValueError(family)


def policy_and_ref(family, tok, dtype=torch.float64):
    """A reference model and a policy near it (as after a warm-up), both in `dtype`."""
    ref = build("llama" if family == "lora" else family, tok, seed=0).to(dtype).eval()
    policy = build("llama" if family == "lora" else family, tok, seed=0).to(dtype)
    if family == "lora":
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1,
                                                   target_modules=["q_proj", "v_proj", "down_proj"]))
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for n, p in policy.named_parameters():
                if "lora_B" in n:  # a trained adapter is not zero
                    p.copy_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    else:
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    policy.train()  # scoring must switch dropout off by itself
    return policy, ref


def ref_logps(ref, train, val, reduction="sum"):
    lp = lambda t: pair_logprobs(ref, t, batch_size=8, reduction=reduction, show_progress=False)  # noqa: E731
    return lp(train), lp(val)


# ----------------------------------------------------------------------------------------------------
# An independent implementation: unpadded, one sequence at a time, no tifkit code
# ----------------------------------------------------------------------------------------------------
def naive_seq_logp(model, prompt, completion):
    ids = torch.tensor([prompt + completion])
    lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
    pos = torch.arange(len(prompt) - 1, len(prompt) + len(completion) - 1)
    return lp[pos, torch.tensor(completion, dtype=torch.long)].sum()


def naive_pair_loss(model, tk, i, ref_w, ref_l, margin=False):
    """DPO's -log sigmoid(h), or with margin=True the linear measurement -h."""
    w = naive_seq_logp(model, tk.prompt_ids[i], tk.chosen_ids[i])
    l = naive_seq_logp(model, tk.prompt_ids[i], tk.rejected_ids[i])
    h = BETA * ((w - float(ref_w[i])) - (l - float(ref_l[i])))
    return -h if margin else -F.logsigmoid(h)


def naive_grad(model, tk, i, ref, margin=False):
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.autograd.grad(naive_pair_loss(model, tk, i, *ref, margin=margin), params)
    return torch.cat([x.reshape(-1) for x in g])


# (training side uses the margin loss -h, validation side uses it) for each IF measurement, written
# out here independently of influence.measure_losses
MEASURE_SIDES = {"val_loss": (False, False), "val_margin": (False, True), "unweighted": (True, True)}


# ----------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------
def test_loss_matches_trl_formulas():
    rng = np.random.default_rng(0)
    pw, pl, rw, rl = (rng.normal(-20, 3, 50) for _ in range(4))
    h = BETA * ((pw - rw) - (pl - rl))
    for lt, want in [("sigmoid", -np.log(1 / (1 + np.exp(-h)))), ("hinge", np.maximum(0, 1 - h))]:
        np.testing.assert_allclose(dpo_loss_per_pair(pw, pl, rw, rl, BETA, lt), want, rtol=1e-12)
        t = dpo_loss_per_pair(*(torch.tensor(x) for x in (pw, pl, rw, rl)), BETA, lt)
        np.testing.assert_allclose(t.numpy(), want, rtol=1e-12)
    with pytest.raises(TifkitError):
        dpo_loss_per_pair(pw, pl, rw, rl, BETA, "ipo")


@pytest.mark.parametrize("measure", list(MEASURE_SIDES))
def test_loop_equals_independent_autograd(tok, data, measure):
    """The exact loop equals a from-scratch float64 autograd computation (unpadded, per sequence),
    for each IF measurement."""
    train, val = data
    policy, ref = policy_and_ref("llama", tok)
    rtr, rva = ref_logps(ref, train, val)
    got = influence_loop(policy, train, rtr, val, rva, OBJ.with_measure(measure), show_progress=False)
    policy.eval()
    m_tr, m_val = MEASURE_SIDES[measure]
    g_val = sum(naive_grad(policy, val, j, rva, m_val) for j in range(len(val))) / len(val)
    want = np.array([float(naive_grad(policy, train, i, rtr, m_tr) @ g_val) for i in range(len(train))])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-8 * np.abs(want).max())


@pytest.mark.parametrize("measure", list(MEASURE_SIDES))
def test_loop_equals_finite_differences(tok, data, measure):
    """IF(d) = d/de M_val(theta + e * grad T(d)) at e = 0 (central differences, float64, NeoX: all
    float64 ops), with T the training-side loss and M_val the mean validation-side loss of `measure`."""
    train, val = data
    policy, ref = policy_and_ref("neox", tok)
    policy.eval()
    rtr, rva = ref_logps(ref, train, val)
    got = influence_loop(policy, train, rtr, val, rva, OBJ.with_measure(measure), show_progress=False)
    params = list(policy.parameters())
    m_tr, m_val = MEASURE_SIDES[measure]

    def val_loss():
        with torch.no_grad():
            return float(sum(naive_pair_loss(policy, val, j, *rva, margin=m_val) for j in range(len(val))) / len(val))

    for i in (0, 5, 11):
        g = naive_grad(policy, train, i, rtr, m_tr)
        eps = 1e-3 / float(g.norm())
        fd = []
        for sign in (1, -1):
            off = 0
            with torch.no_grad():
                for p in params:
                    p.add_(sign * eps * g[off: off + p.numel()].view_as(p))
                    off += p.numel()
            fd.append(val_loss())
            with torch.no_grad():
                off = 0
                for p in params:
                    p.sub_(sign * eps * g[off: off + p.numel()].view_as(p))
                    off += p.numel()
        assert (fd[0] - fd[1]) / (2 * eps) == pytest.approx(got[i], rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("family", ["llama", "llama_tied", "gpt2", "neox", "lora"])
def test_batched_equals_loop(tok, data, family):
    """Hook-based per-pair inner products equal the one-backward-per-pair loop (float64, all families)."""
    train, val = data
    policy, ref = policy_and_ref(family, tok)
    flags = [p.requires_grad for p in policy.parameters()]
    rtr, rva = ref_logps(ref, train, val)
    loop = influence_loop(policy, train, rtr, val, rva, OBJ, show_progress=False)
    fast = influence_scores(policy, (rtr, rva), train, val, objective=OBJ, batch_size=5, show_progress=False)
    np.testing.assert_allclose(fast, loop, rtol=RTOL[family], atol=RTOL[family] * 1e-2 * np.abs(loop).max())
    assert policy.training and [p.requires_grad for p in policy.parameters()] == flags  # state restored
    if family == "lora":
        assert sum(p.numel() for _, p in trainable_parameters(policy)) < 3000  # adapters only


def test_chunks_against_one_validation_gradient(tok, data):
    """Scoring D_tr in chunks against one g_val gives the same scores as one call."""
    train, val = data
    policy, ref = policy_and_ref("gpt2", tok)
    rtr, rva = ref_logps(ref, train, val)
    full = influence_scores(policy, (rtr, rva), train, val, objective=OBJ, batch_size=4, show_progress=False)
    g_val = validation_gradient(policy, val, rva, OBJ)
    parts = []
    for idx in (np.arange(0, 7), np.arange(7, 16)):
        parts.append(batched_influence(policy, train.subset(idx), (rtr[0][idx], rtr[1][idx]), g_val, OBJ,
                                       batch_size=3, show_progress=False))
    np.testing.assert_allclose(np.concatenate(parts), full, rtol=1e-9, atol=1e-12)
    with pytest.raises(TifkitError):
        batched_influence(policy, train, rtr, g_val[:-1], OBJ, show_progress=False)


@pytest.mark.parametrize("loss_type,reduction", [("hinge", "sum"), ("sigmoid", "mean")])
def test_batched_equals_loop_other_losses(tok, data, loss_type, reduction):
    train, val = data
    policy, ref = policy_and_ref("llama", tok)
    rtr, rva = ref_logps(ref, train, val, reduction)
    if loss_type == "hinge":  # keep some pairs inside the margin so the hinge has gradient
        rtr = (rtr[0] - 1.0, rtr[1])
    loop = influence_loop(policy, train, rtr, val, rva, Objective(loss_type, BETA), reduction, show_progress=False)
    fast = influence_scores(policy, (rtr, rva), train, val, objective=Objective(loss_type, BETA), reduction=reduction,
                            batch_size=4, show_progress=False)
    assert np.abs(loop).max() > 0
    np.testing.assert_allclose(fast, loop, rtol=1e-5, atol=1e-7 * np.abs(loop).max())


def test_float32_and_dtype_option(tok, data):
    """Default float32 scoring agrees with float64 to float32 accuracy; dtype=float64 scores a float64 copy."""
    train, val = data
    policy, ref = policy_and_ref("llama", tok, dtype=torch.float32)
    exact = influence_scores(policy, ref, train, val, objective=OBJ, method="loop", dtype=torch.float64, show_progress=False)
    assert next(policy.parameters()).dtype == torch.float32  # the caller's model is untouched
    fast32 = influence_scores(policy, ref, train, val, objective=OBJ, batch_size=8, show_progress=False)
    np.testing.assert_allclose(fast32, exact, rtol=1e-3, atol=1e-4 * np.abs(exact).max())


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_projection_within_jl_bound(tok, data, kind):
    """Per pair, |<Pg_d, Pg_val> - <g_d, g_val>| <= 5 sd, sd = sqrt((|g_d|^2|g_val|^2 + IF^2)/k);
    and the mean squared standardized error is about 1 (< 2.5), which a wrong scale of P would break."""
    train, val = data
    policy, ref = policy_and_ref("neox", tok)
    rtr, rva = ref_logps(ref, train, val)
    k = 256
    exact = influence_loop(policy, train, rtr, val, rva, OBJ, show_progress=False)
    proj = influence_scores(policy, (rtr, rva), train, val, objective=OBJ, method="projected", project_dim=k, seed=3,
                            projection=kind, batch_size=8, show_progress=False)
    g_val = torch.cat([g.reshape(-1) for g in validation_gradient(policy, val, rva, OBJ)])
    g_norm = np.array([float(flat_pair_gradient(policy, train, rtr, i, OBJ).norm()) for i in range(len(train))])
    sd = np.sqrt((g_norm**2 * float(g_val.norm()) ** 2 + exact**2) / k)
    z = (proj - exact) / sd
    assert np.all(np.abs(z) < 5), z
    assert np.mean(z**2) < 2.5
    assert np.corrcoef(proj, exact)[0, 1] > 0.6
    again = influence_scores(policy, (rtr, rva), train, val, objective=OBJ, method="projected", project_dim=k, seed=3,
                             projection=kind, batch_size=3, show_progress=False)
    np.testing.assert_allclose(again, proj, rtol=1e-9, atol=1e-12)  # same seed, same P, whatever the batching
    # norms: |Pg|^2 / |g|^2 has mean 1 and sd <= sqrt(2/k) = 0.09; a mis-scaled P fails this
    P = RandomProjection(trainable_parameters(policy), k, seed=3, kind=kind)
    Z = projected_pair_gradients(policy, train, rtr, OBJ, P, batch_size=8, show_progress=False)
    ratios = (Z**2).sum(1) / g_norm**2
    assert np.all(np.abs(ratios - 1) < 5 * np.sqrt(2 / k)), ratios
    assert abs(ratios.mean() - 1) < 0.2


def test_projected_gradients_are_projections_of_exact_gradients(tok, data):
    """The hook-formed per-pair gradients, projected, equal P times the loop's flattened gradients."""
    train, val = data
    policy, ref = policy_and_ref("gpt2", tok)
    rtr, _ = ref_logps(ref, train, val)
    named = trainable_parameters(policy)
    P = RandomProjection(named, 32, seed=0)
    Z = projected_pair_gradients(policy, train, rtr, OBJ, P, batch_size=6, show_progress=False)
    for i in (0, 7):
        g = flat_pair_gradient(policy, train, rtr, i, OBJ)
        parts, off = [], 0
        for _, p in named:
            parts.append(g[off: off + p.numel()].view_as(p))
            off += p.numel()
        np.testing.assert_allclose(Z[i], project_vector(P, policy, parts), rtol=1e-8, atol=1e-12)


def test_lossdiff_is_first_order_if(tok, data):
    """theta_val = theta - eta * g_val: LossDiff(d) = loss(theta; d) - loss(theta_val; d) ~ eta * IF(d)."""
    train, val = data
    policy, ref = policy_and_ref("llama", tok)
    rtr, rva = ref_logps(ref, train, val)
    IF = influence_scores(policy, (rtr, rva), train, val, objective=OBJ, batch_size=8, show_progress=False)
    g_val = validation_gradient(policy, val, rva, OBJ)
    eta = 1e-3 / float(torch.sqrt(sum((g**2).sum() for g in g_val)))

    def losses():
        w, l = pair_logprobs(policy, train, show_progress=False)
        return dpo_loss_per_pair(w, l, *rtr, BETA)

    before = losses()
    with torch.no_grad():
        for (_, p), g in zip(trainable_parameters(policy), g_val):
            p.sub_(eta * g)
    diff = before - losses()
    assert np.corrcoef(diff, eta * IF)[0, 1] > 0.99
    np.testing.assert_allclose(diff, eta * IF, rtol=0.05, atol=0.05 * np.abs(eta * IF).max())


class _ToyLM(torch.nn.Module):
    """An LM whose head reuses the embedding matrix outside the embedding module's forward."""

    def __init__(self, V, d=8):
        super().__init__()
        self.embed = torch.nn.Embedding(V, d)
        self.mix = torch.nn.Linear(d, d)

    def forward(self, input_ids, attention_mask=None, use_cache=None):
        h = torch.tanh(self.mix(self.embed(input_ids)))
        from types import SimpleNamespace

        return SimpleNamespace(logits=F.linear(h, self.embed.weight))


def test_verify_catches_a_missed_gradient(tok, data):
    train, val = data
    torch.manual_seed(0)
    policy, ref = _ToyLM(len(tok)).double(), _ToyLM(len(tok)).double()
    rtr, rva = ref_logps(ref, train, val)
    with pytest.raises(TifkitError, match="embed.weight"):
        influence_scores(policy, (rtr, rva), train, val, objective=OBJ, show_progress=False)
    # the loop does not rely on module structure
    assert np.isfinite(influence_scores(policy, (rtr, rva), train, val, objective=OBJ, method="loop", show_progress=False)).all()


def test_bad_arguments(tok, data):
    train, val = data
    policy, ref = policy_and_ref("llama", tok)
    rtr, rva = ref_logps(ref, train, val)
    with pytest.raises(TifkitError):
        influence_scores(policy, (rtr, rva), train, val, method="projected")  # no project_dim
    with pytest.raises(TifkitError):
        influence_scores(policy, (rtr, rva), train, val, method="fast")
    with pytest.raises(TifkitError):
        influence_scores(policy, (rtr, (rva[0][:2], rva[1][:2])), train, val)
    with pytest.raises(TifkitError, match="if_measure"):
        Objective("sigmoid", BETA, "val_cosine")


def test_only_an_objective_names_the_loss(tok, data):
    """A bare beta (or loss_type / measure strings) is no longer accepted: a TypeError naming the parameter."""
    train, val = data
    policy, ref = policy_and_ref("gpt2", tok)
    rtr, rva = ref_logps(ref, train, val)
    with pytest.raises(TypeError, match="`objective` takes a tifkit.losses.Objective"):
        influence_scores(policy, (rtr, rva), train, val, BETA)
    with pytest.raises(TypeError, match="tifkit.losses.Objective"):
        validation_gradient(policy, val, rva, BETA)
    with pytest.raises(TypeError):
        influence_scores(policy, (rtr, rva), train, val, beta=BETA, loss_type="sigmoid")  # removed parameters


@pytest.mark.parametrize("family,measure", [("gpt2", "val_margin"), ("llama", "unweighted"), ("lora", "val_margin")])
def test_batched_equals_loop_per_measure(tok, data, family, measure):
    """The batched hooks follow the measurement like the loop does (and the measurement matters)."""
    train, val = data
    policy, ref = policy_and_ref(family, tok)
    rtr, rva = ref_logps(ref, train, val)
    loop = influence_loop(policy, train, rtr, val, rva, OBJ.with_measure(measure), show_progress=False)
    fast = influence_scores(policy, (rtr, rva), train, val, OBJ.with_measure(measure), batch_size=5,
                            show_progress=False)
    np.testing.assert_allclose(fast, loop, rtol=RTOL[family], atol=RTOL[family] * 1e-2 * np.abs(loop).max())
    default = influence_loop(policy, train, rtr, val, rva, OBJ, show_progress=False)
    assert np.abs(default - loop).max() > 1e-3 * np.abs(loop).max()  # the measurement changes the scores


def test_measures_differ_by_the_sigmoid_weights(tok, data):
    """For DPO, val_margin IF = sigmoid(-h_d) * unweighted IF for every pair (the training-side weight),
    and with a single validation pair v, val_loss IF = sigmoid(-h_v) * val_margin IF."""
    train, val = data
    policy, ref = policy_and_ref("llama", tok)
    rtr, rva = ref_logps(ref, train, val)
    kw = dict(batch_size=8, show_progress=False)
    vm = influence_scores(policy, (rtr, rva), train, val, OBJ.with_measure("val_margin"), **kw)
    un = influence_scores(policy, (rtr, rva), train, val, OBJ.with_measure("unweighted"), **kw)
    pw, pl = pair_logprobs(policy, train, show_progress=False)
    h = BETA * ((pw - rtr[0]) - (pl - rtr[1]))
    np.testing.assert_allclose(vm, un / (1 + np.exp(h)), rtol=1e-6, atol=1e-9 * np.abs(vm).max())
    one = val.subset([2])
    r1 = (rva[0][[2]], rva[1][[2]])
    vl1 = influence_scores(policy, (rtr, r1), train, one, OBJ.with_measure("val_loss"), **kw)
    vm1 = influence_scores(policy, (rtr, r1), train, one, OBJ.with_measure("val_margin"), **kw)
    qw, ql = pair_logprobs(policy, one, show_progress=False)
    hv = BETA * ((qw - r1[0]) - (ql - r1[1]))[0]
    # (Llama rounds its norm inputs to float32: RTOL["llama"])
    np.testing.assert_allclose(vl1, vm1 / (1 + np.exp(hv)), rtol=RTOL["llama"], atol=1e-7 * np.abs(vl1).max())
    assert measure_losses("hinge", "unweighted") == ("margin", "margin")
