"""tifkit.logprobs: TRL-identical tokenization, batched log-probs that match TRL's, the on-disk cache."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
import torch

from tifkit.logprobs import cached_pair_logprobs, pair_logprobs, tokenize_pairs
from tifkit.tokenizer import build_char_tokenizer

torch.set_num_threads(1)

# The generation prompt ends in "?" that the full conversation does not render: the prompt is then the
# common prefix of the tokenized prompt and prompt+completion (TRL's `common_prefix_length` rule).
CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>?{% endif %}"
)


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


def tiny_llama(tok, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    return LlamaForCausalLM(cfg).eval()


def random_pairs(n, seed=0, eos_every=4):
    rng = np.random.default_rng(seed)

    def text(lo, hi):
        return "".join(rng.choice(list("abcdefgh ,."), int(rng.integers(lo, hi))))

    rows = []
    for i in range(n):
        chosen, rejected = text(1, 16), text(1, 16)
        if i % eos_every == 0:
            chosen += "<eos>"  # already terminated: TRL must not add a second eos
        rows.append({"pair_id": f"p{i}", "prompt": text(3, 12), "chosen": chosen, "rejected": rejected})
    return pd.DataFrame(rows)


def make_trainer(tok, model, ref, rows, max_length, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(
        output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, gradient_checkpointing=False,
        report_to="none", max_length=max_length, per_device_train_batch_size=4, dataset_num_proc=None,
    )
    ds = Dataset.from_list(rows)
    return DPOTrainer(model=model, ref_model=ref, args=args, processing_class=tok, train_dataset=ds)


def trl_truncated(ex, max_length):
    """The ids TRL's collator feeds the model: prompt+completion cut to max_length (keep_start)."""
    p, c, r = ex["prompt_ids"], ex["chosen_ids"], ex["rejected_ids"]
    if max_length is None:
        return p, c, r
    room = max(0, max_length - len(p))
    return p[:max_length], c[:room], r[:room]


@pytest.mark.parametrize("max_length", [None, 18])
def test_tokenization_matches_trl(tok, tmp_path, max_length):
    df = random_pairs(12)
    if max_length is not None:
        df.loc[3, "prompt"] = "x" * (max_length + 2)  # prompt fills max_length: TRL drops the row
    tk = tokenize_pairs(tok, df, max_length=max_length)
    trainer = make_trainer(tok, tiny_llama(tok), tiny_llama(tok, 1), df.to_dict("records"), max_length, tmp_path)
    kept = np.flatnonzero(~tk.trl_dropped)
    assert len(trainer.train_dataset) == len(kept)
    if max_length is not None:
        assert tk.trl_dropped[3] and tk.trl_dropped.sum() == 1
    for j, i in enumerate(kept):
        p, c, r = trl_truncated(trainer.train_dataset[j], max_length)
        assert (tk.prompt_ids[i], tk.chosen_ids[i], tk.rejected_ids[i]) == (p, c, r)
    assert tk.pair_ids == list(df["pair_id"])
    if max_length is None:  # eos appended once, and only where missing
        assert all(ids[-1] == tok.eos_token_id for ids in tk.chosen_ids + tk.rejected_ids)
        assert tk.chosen_ids[0].count(tok.eos_token_id) == 1


def test_conversational_tokenization_matches_trl(tok, tmp_path):
    tok = build_char_tokenizer()
    tok.chat_template = CHAT_TEMPLATE
    rng = np.random.default_rng(1)
    rows = []
    for i in range(6):
        q = "".join(rng.choice(list("abcd "), 6))
        rows.append({
            "prompt": [{"role": "user", "content": q}],
            "chosen": [{"role": "assistant", "content": "yes " + q[:i + 1]}],
            "rejected": [{"role": "assistant", "content": "no"}],
        })
    tk = tokenize_pairs(tok, rows)
    trainer = make_trainer(tok, tiny_llama(tok), tiny_llama(tok, 1), rows, None, tmp_path)
    for i in range(len(rows)):
        ex = trainer.train_dataset[i]
        assert (tk.prompt_ids[i], tk.chosen_ids[i], tk.rejected_ids[i]) == (ex["prompt_ids"], ex["chosen_ids"], ex["rejected_ids"])
    assert tok.decode(tk.prompt_ids[0]).endswith("<assistant>")  # the "?" is left out, as TRL does
    assert tok.decode(tk.rejected_ids[0]) == "no\n"  # no eos appended to chat rows


def test_logprobs_match_trl_per_pair(tok, tmp_path):
    """Our per-pair log-probs equal DPOTrainer's own (its reference log-prob routine, and the
    `logps/chosen` metric of its loss) on the same pairs, to 1e-5."""
    df = random_pairs(16, seed=3)
    max_length = 22
    model, ref = tiny_llama(tok, 0), tiny_llama(tok, 1)
    tk = tokenize_pairs(tok, df, max_length=max_length)
    ours_c, ours_r = pair_logprobs(model, tk, batch_size=5, show_progress=False)

    trainer = make_trainer(tok, model, ref, df.to_dict("records"), max_length, tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(df))])
    trainer.model.eval()
    with torch.no_grad():
        trl_c, trl_r = trainer.compute_ref_log_probs(trainer.model, batch)  # per-pair log-probs of `model`
    np.testing.assert_allclose(ours_c, trl_c.double().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours_r, trl_r.double().numpy(), rtol=1e-5, atol=1e-5)

    with torch.no_grad():  # the loss path logs the batch mean of the policy's chosen/rejected log-probs
        trainer.compute_loss(trainer.model, batch)
    assert trainer._metrics["eval"]["logps/chosen"][-1] == pytest.approx(ours_c.mean(), abs=1e-5)
    assert trainer._metrics["eval"]["logps/rejected"][-1] == pytest.approx(ours_r.mean(), abs=1e-5)


def naive_logps(model, tk, reduction="sum"):
    """One unpadded sequence at a time, straight from the logits."""
    out = []
    for side in ("chosen_ids", "rejected_ids"):
        vals = []
        for p, c in zip(tk.prompt_ids, getattr(tk, side)):
            ids = torch.tensor([p + c])
            with torch.no_grad():
                lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
            tok_lp = lp[torch.arange(len(p) - 1, len(p) + len(c) - 1), torch.tensor(c, dtype=torch.long)]
            vals.append(float(tok_lp.sum() / (max(len(c), 1) if reduction == "mean" else 1)))
        out.append(np.array(vals))
    return out


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_batching_and_order(tok, reduction):
    tk = tokenize_pairs(tok, random_pairs(11, seed=5))
    model = tiny_llama(tok)
    model.train()
    c1, r1 = pair_logprobs(model, tk, batch_size=1, reduction=reduction, show_progress=False)
    c4, r4 = pair_logprobs(model, tk, batch_size=4, reduction=reduction, show_progress=False)
    cn, rn = naive_logps(model, tk, reduction)
    assert model.training  # mode restored
    assert c1.dtype == np.float64 and c1.shape == (11,)
    for a, b in [(c1, c4), (r1, r4), (c4, cn), (r4, rn)]:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    if reduction == "mean":
        cs, _ = pair_logprobs(model, tk, batch_size=4, reduction="sum", show_progress=False)
        n_tok = np.array([len(c) for c in tk.chosen_ids])
        np.testing.assert_allclose(c4, cs / n_tok, rtol=1e-6)


def test_cache_hit_runs_no_forward(tok, tmp_path):
    tk = tokenize_pairs(tok, random_pairs(9, seed=7))
    model = tiny_llama(tok)
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    c, r = cached_pair_logprobs(model, tk, tmp_path, batch_size=4, show_progress=False)
    n_first = len(calls)
    assert n_first > 0
    c2, r2 = cached_pair_logprobs(model, tk, tmp_path, batch_size=4, show_progress=False)
    assert len(calls) == n_first  # read from disk
    np.testing.assert_array_equal(c, c2)
    np.testing.assert_array_equal(r, r2)
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 1 and files[0].startswith("logps-") and files[0].endswith(".npz")

    cached_pair_logprobs(model, tk, tmp_path, reduction="mean", show_progress=False)  # new key
    assert len(calls) > n_first
    n2 = len(calls)
    with torch.no_grad():
        next(model.parameters())[0, 0] += 1e-3  # any weight change is a new key
    cached_pair_logprobs(model, tk, tmp_path, show_progress=False)
    assert len(calls) > n2
    cached_pair_logprobs(model, tk.subset([0, 1, 2]), tmp_path, show_progress=False)  # other pairs: new key
    assert len(os.listdir(tmp_path)) == 4
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
