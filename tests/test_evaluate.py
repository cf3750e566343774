"""Evaluation: generation (left padding, cache), prompt sets, WinRate and bootstrap intervals."""
import dataclasses
import json
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import tifkit.evaluate as ev
from tifkit import TifkitError
from tifkit.config import load_params
from tifkit.evaluate import (EvalParams, cached_generate, evaluate_from_params, evaluate_policy,
                             generate, load_prompt_set, single_score, winrate)
from tifkit.stats import paired_bootstrap_diff
from tifkit.judges import OracleJudge, Verdict
from tifkit.tokenizer import build_char_tokenizer

PROMPTS = ["hello ", "a much longer prompt here: ", "x", "what is 2+2? "]


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


def tiny_lm(tok, seed):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def models(tok):
    torch.set_num_threads(1)
    return tiny_lm(tok, 0), tiny_lm(tok, 1)


# ---------------------------------------------------------------------------------- generation


def test_left_padded_batch_equals_one_at_a_time(tok, models):
    policy, _ = models
    batched = generate(policy, tok, PROMPTS, max_new_tokens=12, batch_size=4, show_progress=False)
    single = [generate(policy, tok, [p], max_new_tokens=12, batch_size=1, show_progress=False)[0]
              for p in PROMPTS]
    assert batched == single
    assert all(isinstance(r, str) and len(r) <= 12 for r in batched)
    assert tok.padding_side == "right"  # restored


def test_generation_stops_at_eos_including_generation_config_eos(tok, models):
    policy, _ = models
    full = generate(policy, tok, PROMPTS, max_new_tokens=12, show_progress=False)
    stop_char = full[1][2]  # make a character the greedy output produces an extra eos (as
    saved = policy.generation_config.eos_token_id  # Llama-3's <|eot_id|> is)
    policy.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids(stop_char)]
    try:
        cut = generate(policy, tok, PROMPTS, max_new_tokens=12, show_progress=False)
    finally:
        policy.generation_config.eos_token_id = saved
    assert cut == [r.split(stop_char)[0] for r in full]
    assert cut != full  # the extra eos did cut something


def test_sampling_is_seeded(tok, models):
    policy, _ = models
    kw = dict(max_new_tokens=8, do_sample=True, temperature=1.5, show_progress=False)
    a = generate(policy, tok, PROMPTS, seed=3, **kw)
    assert a == generate(policy, tok, PROMPTS, seed=3, **kw)
    assert a != generate(policy, tok, PROMPTS, seed=4, **kw)


def test_generation_cache_hit_on_rerun(tok, models, tmp_path, monkeypatch):
    policy, _ = models
    calls = []
    real = ev.generate
    monkeypatch.setattr(ev, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    gen = {"max_new_tokens": 6, "batch_size": 2}
    first = cached_generate(policy, tok, PROMPTS, gen, tmp_path, show_progress=False)
    assert len(calls) == 1 and len(list(tmp_path.glob("gen-*.parquet"))) == 1
    again = cached_generate(policy, tok, PROMPTS, gen, tmp_path, show_progress=False)
    assert again == first and len(calls) == 1  # read from disk, nothing generated
    cached_generate(policy, tok, PROMPTS, {**gen, "max_new_tokens": 7}, tmp_path, show_progress=False)
    cached_generate(policy, tok, PROMPTS[:2], gen, tmp_path, show_progress=False)
    cached_generate(policy, tok, PROMPTS, gen, tmp_path, model_key="ckpt-1", show_progress=False)
    assert len(calls) == 4  # new params, new prompts, new model identity: each generates
    table = pd.read_parquet(next(tmp_path.glob("gen-*.parquet")))
    assert list(table.columns) == ["prompt", "response"]


# ---------------------------------------------------------------------------------- metrics


def loop_bootstrap(values, n_bootstrap, seed):
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(values), size=len(values))
        means.append(np.mean([values[i] for i in idx]))
    return np.percentile(means, [2.5, 97.5])


def test_winrate_and_interval_match_a_plain_loop():
    verdicts = ["win", "tie", "loss", "win", "win", "tie", "loss", "win", "win", "loss"]
    values = [1, 0.5, 0, 1, 1, 0.5, 0, 1, 1, 0]
    rate, lo, hi = winrate(verdicts, n_bootstrap=500, seed=7)
    assert rate == pytest.approx(6 / 10)
    np.testing.assert_allclose([lo, hi], loop_bootstrap(values, 500, 7))
    assert lo <= rate <= hi
    # Verdict objects and numbers give the same; errors are left out
    objs = [Verdict(v) for v in verdicts] + [Verdict("error", error="HTTP 500")]
    assert tuple(winrate(objs, n_bootstrap=500, seed=7)) == (rate, lo, hi)
    assert winrate(values, n_bootstrap=500, seed=7).estimate == rate
    assert all(np.isnan(winrate([Verdict("error")])))


def test_single_score_drops_nan():
    est, lo, hi = single_score([7, np.nan, 9, 8], n_bootstrap=200, seed=1)
    assert est == pytest.approx(8.0)
    np.testing.assert_allclose([lo, hi], loop_bootstrap([7, 9, 8], 200, 1))


def test_paired_bootstrap_diff_matches_loops():
    rng = np.random.default_rng(0)
    a, b = rng.choice([0, 0.5, 1], size=30), rng.choice([0, 0.5, 1], size=30)
    diff, lo, hi = paired_bootstrap_diff(a, b, n_bootstrap=300, seed=2)
    assert diff == pytest.approx(a.mean() - b.mean())
    np.testing.assert_allclose([lo, hi], loop_bootstrap(list(a - b), 300, 2))

    strata = np.repeat([0, 1, 2], 10)  # e.g. three seeds, resampled within each seed
    d, lo_s, hi_s = paired_bootstrap_diff(a, b, n_bootstrap=300, seed=2, strata=strata)
    gen = np.random.default_rng(2)
    idx = [gen.integers(0, 10, size=(300, 10)) + 10 * s for s in range(3)]  # stratum order
    means = np.concatenate([(a - b)[i] for i in idx], axis=1).mean(axis=1)
    assert d == pytest.approx(diff)
    np.testing.assert_allclose([lo_s, hi_s], np.percentile(means, [2.5, 97.5]))
    with pytest.raises(TifkitError):
        paired_bootstrap_diff(a, b[:5])


# ---------------------------------------------------------------------------------- prompt sets


def test_load_prompt_set_from_lists_and_files(tmp_path):
    assert load_prompt_set(["a", "b", "c"], max_prompts=2) == ["a", "b"]
    assert load_prompt_set(pd.DataFrame({"prompt": ["p"]})) == ["p"]
    assert load_prompt_set("world", prompts=["w1", "w2"]) == ["w1", "w2"]
    rows = [{"prompt": "one"}, {"instruction": "two"}, {"turns": ["three", "follow-up"]},
            {"turns": [{"content": "four"}]}]
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert load_prompt_set(str(path)) == ["one", "two", "three", "four"]


def test_load_prompt_set_errors_are_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(TifkitError, match="world"):
        load_prompt_set("world")
    with pytest.raises(TifkitError, match="Unknown prompt set"):
        load_prompt_set("no-such-set")
    with pytest.raises(TifkitError, match="local JSONL"):
        load_prompt_set("vicuna")
    import datasets

    def offline(*a, **k):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(TifkitError, match="local JSONL.*hub access"):
        load_prompt_set("alpacaeval")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "no prompt field"}))
    with pytest.raises(TifkitError, match="no prompt"):
        load_prompt_set(str(bad))


def test_shipped_params_name_only_prompt_sets_that_load_or_fail_before_training(tmp_path, monkeypatch):
    """A named set without a hub copy (Vicuna) can only fail at evaluation, after the training; so the
    shipped files name a local file for it instead, which check_prompt_sets refuses up front when it is
    missing and accepts once it is there."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    for path in sorted((root / "params").glob("*.yaml")):
        sets = [str(s) for s in load_params(path).eval.prompt_sets]
        no_copy = [s for s in sets if s in ev.HUB_PROMPT_SETS and ev.HUB_PROMPT_SETS[s]["args"] is None]
        assert not no_copy, f"{path.name} names {no_copy}, which load_prompt_set cannot load by name"
    params = load_params(root / "params" / "llama-3.1-8b.yaml").eval
    (local,) = [str(s) for s in params.prompt_sets if str(s) not in ev.HUB_PROMPT_SETS]
    with pytest.raises(TifkitError, match="does not exist"):
        ev.check_prompt_sets(params, has_world=False)
    Path(local).parent.mkdir(parents=True)
    Path(local).write_text(json.dumps({"turns": ["a Vicuna-style question"]}) + "\n")
    ev.check_prompt_sets(params, has_world=False)
    assert load_prompt_set(local) == ["a Vicuna-style question"]


# ---------------------------------------------------------------------------------- end to end


def count_e(prompt, response):
    return response.count("e") / max(1, len(response))


def test_evaluate_policy_with_oracle(tok, models, tmp_path):
    policy, ref = models
    params = EvalParams(max_new_tokens=10, batch_size=2, n_bootstrap=200)
    result = evaluate_policy(policy, ref, tok, PROMPTS, OracleJudge(count_e), params,
                             tmp_path / "gen", table_path=tmp_path / "table.parquet")
    table = pd.read_parquet(tmp_path / "table.parquet")
    assert len(table) == len(PROMPTS) and table["prompt"].tolist() == PROMPTS
    expected = [count_e(p, r) for p, r in zip(PROMPTS, table["response_policy"])]
    np.testing.assert_allclose(table["score_policy"], expected)
    assert result.winrate.estimate == pytest.approx(table["verdict_value"].mean())
    assert result.single_score.estimate == pytest.approx(np.mean(expected))
    assert sum(result.counts.values()) == len(PROMPTS)
    assert len(list((tmp_path / "gen").glob("gen-*.parquet"))) == 2
    json.dumps(result.summary())


def test_evaluate_from_params_writes_tables_and_summary(tok, models, tmp_path):
    policy, ref = models
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("\n".join(json.dumps({"prompt": p}) for p in ["why ", "how "]))
    params = EvalParams(prompt_sets=["world", str(jsonl)], max_new_tokens=6, n_bootstrap=50,
                        max_prompts=3)
    results = evaluate_from_params(params, policy, ref, tok, tmp_path / "out",
                                   world_prompts=PROMPTS, reward_fn=count_e, show_progress=False)
    assert set(results) == {"world", "mine"}
    assert len(results["world"].table) == 3 and len(results["mine"].table) == 2
    summary = json.loads((tmp_path / "out" / "eval_summary.json").read_text())
    assert set(summary) == {"world", "mine"}
    assert (tmp_path / "out" / "eval_world.parquet").exists()
    with pytest.raises(TifkitError, match="reward_model"):
        ev.build_judge(EvalParams(judge="reward_model"))


def test_eval_params_fields_are_config_friendly():
    allowed = {int, float, str, bool, list, dict, typing.Literal, typing.Union, type(None)}
    for f in dataclasses.fields(EvalParams):
        assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        hint = typing.get_type_hints(EvalParams)[f.name]
        assert (typing.get_origin(hint) or hint) in allowed or "UnionType" in str(type(hint)), f.name
