"""Tiny families, SFT, one DPO and one SLiC step per family on TRL, LoRA, save/reload round trips."""
import copy

import pandas as pd
import pytest
import torch

from tifkit import TifkitError
from tifkit.models import TINY_FAMILIES, LoraParams, ModelParams, apply_lora, build_tiny_model, load_model, n_params
from tifkit.io import stage_complete
from tifkit.train import SFTParams, TrainParams, dpo_train, save_stage, sft_train
from tifkit.world import WorldConfig, build_world

SIZE = dict(hidden_size=32, num_layers=2, num_heads=4, max_positions=64)


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig(n_sft=200, n_train=24, n_val=8, n_test=8, n_rm=8), 0)


def _frozen_copy(m):
    ref = copy.deepcopy(m).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_tiny_family_builds_and_is_small(family, char_tokenizer):
    m = build_tiny_model(family, char_tokenizer, seed=0, **SIZE)
    assert m.config.vocab_size == len(char_tokenizer)
    assert n_params(m) < 200_000
    a = build_tiny_model(family, char_tokenizer, seed=0, **SIZE)
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), a.parameters()))  # seeded


def test_unknown_family_is_one_sentence(char_tokenizer):
    with pytest.raises(TifkitError, match="Unknown tiny model family 'mamba'"):
        build_tiny_model("mamba", char_tokenizer)


def test_sft_lowers_the_loss(char_tokenizer, world):
    m = build_tiny_model("llama", char_tokenizer, seed=0, **SIZE)
    _, losses = sft_train(m, char_tokenizer, world.sft.prompt, world.sft.response,
                          SFTParams(steps=40, batch_size=16), show_progress=False)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3


@pytest.mark.parametrize("objective", ["dpo", "slic"])
@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_one_training_step_per_family_and_objective(family, objective, char_tokenizer, world):
    m = build_tiny_model(family, char_tokenizer, seed=0, **SIZE)
    ref = _frozen_copy(m)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    tp = TrainParams(objective=objective, batch_size=8, lr=1e-2, logging_steps=1)
    pairs = world.train.iloc[:8]
    m, hist = dpo_train(m, ref, char_tokenizer, pairs, tp, epochs=1, show_progress=False)
    losses = [h["loss"] for h in hist if "loss" in h]
    assert len(losses) == 1  # exactly one optimizer step
    if objective == "slic":  # at the reference the margin is 0, so the hinge loss is exactly 1
        assert losses[0] == pytest.approx(1.0, abs=1e-4)
    else:  # and the sigmoid loss log 2
        assert losses[0] == pytest.approx(0.6931, abs=1e-3)
    changed = any(not torch.equal(v, m.state_dict()[k]) for k, v in before.items())
    assert changed
    # the reference is untouched, and a copy of the trained model runs its own weights
    assert all(torch.equal(p, q) for p, q in zip(ref.state_dict().values(), before.values()))
    c = copy.deepcopy(m)
    with torch.no_grad():
        for p in c.parameters():
            p.add_(0.1)
    x = char_tokenizer(["sort abc:"], return_tensors="pt")
    assert not torch.allclose(c(**x).logits, m(**x).logits)


def test_lora_path_trains_only_adapters_and_round_trips(char_tokenizer, world, tmp_path):
    base = build_tiny_model("llama", char_tokenizer, seed=0, **SIZE)
    ref = _frozen_copy(base)
    m = apply_lora(copy.deepcopy(base), LoraParams(enabled=True, r=4, alpha=8, dropout=0.0,
                                                   target_modules=["q_proj", "v_proj"]))
    assert 0 < n_params(m, trainable_only=True) < n_params(m) // 5
    frozen_before = {n: p.clone() for n, p in m.named_parameters() if not p.requires_grad}
    m, _ = dpo_train(m, ref, char_tokenizer, world.train.iloc[:8], TrainParams(batch_size=8, lr=1e-2), 1,
                     show_progress=False)
    for n, p in m.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), n
    out = save_stage(m, char_tokenizer, tmp_path / "lora")
    assert stage_complete(out) and (out / "adapter_config.json").exists()
    from peft import PeftModel

    re = PeftModel.from_pretrained(copy.deepcopy(base), str(out))
    x = char_tokenizer(["sort cab:abc"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(re(**x).logits, m(**x).logits)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_save_reload_round_trip(family, char_tokenizer, tmp_path):
    m = build_tiny_model(family, char_tokenizer, seed=1, **SIZE).eval()
    out = save_stage(m, char_tokenizer, tmp_path / family, extra={"log": pd.DataFrame({"a": [1]})})
    assert stage_complete(out) and not list(tmp_path.glob(".*"))  # no temporary folder left behind
    m2, tok2 = load_model(str(out), ModelParams(device="cpu"))
    text = ["sort hello:ehllo", "sort ab:"]
    assert tok2(text)["input_ids"] == char_tokenizer(text)["input_ids"]
    assert tok2.decode(tok2("sort ba:ab<eos>")["input_ids"], skip_special_tokens=True) == "sort ba:ab"
    x = char_tokenizer(text[:1], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(m2(**x).logits, m(**x).logits)


def test_load_model_missing_path_is_one_sentence(tmp_path):
    with pytest.raises(TifkitError, match="does not exist"):
        load_model(str(tmp_path / "nothing"))
    with pytest.raises(TifkitError, match="Could not load model 'no-such-org/no-such-model'"):
        load_model("no-such-org/no-such-model")


def test_empty_pair_set_is_refused(char_tokenizer, world):
    m = build_tiny_model("llama", char_tokenizer, **SIZE)
    with pytest.raises(TifkitError, match="empty pair set"):
        dpo_train(m, _frozen_copy(m), char_tokenizer, world.train.iloc[:0], TrainParams(), 1)
