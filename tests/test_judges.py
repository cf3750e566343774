"""Judges: oracle, reward model (tiny local classifier), LLM judge against a fake local endpoint."""
import time

import numpy as np
import pytest
import torch

from tifkit import TifkitError
from tifkit.evaluate import EvalParams, evaluate_policy
from tifkit.judges import LLMJudge, OracleJudge, RewardModelJudge, parse_pairwise, parse_rating
from tifkit.reward import reward_scores
from tifkit.tokenizer import build_char_tokenizer

from _fake_llm import FakeServer

# ---------------------------------------------------------------------------------- oracle


def test_oracle_judge_compares_by_reward_with_tolerance():
    judge = OracleJudge(lambda p, r: r.count("e") / 10, tol=1e-9)
    scores = judge.score(["p", "p"], ["eee", "e"])
    np.testing.assert_allclose(scores, [0.3, 0.1])
    verdicts = judge.compare(["p"] * 3, ["ee", "e", "ee"], ["e", "ee", "ee"])
    assert [v.outcome for v in verdicts] == ["win", "loss", "tie"]
    assert verdicts[0].raw == {"score_a": 0.2, "score_b": 0.1}
    # differences below the tolerance tie
    near = OracleJudge(lambda p, r: 0.5 + (1e-12 if r == "a" else 0.0))
    assert near.compare(["p"], ["a"], ["b"])[0].outcome == "tie"
    with pytest.raises(TifkitError):
        judge.compare(["p"], ["a", "b"], ["c"])


# ---------------------------------------------------------------------------------- reward model


@pytest.fixture(scope="module")
def tiny_rm_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = build_char_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, num_labels=1, pad_token_id=0)
    path = tmp_path_factory.mktemp("rm")
    LlamaForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_reward_model_judge_scores_batched_like_one_at_a_time(tiny_rm_dir):
    torch.set_num_threads(1)
    judge = RewardModelJudge(str(tiny_rm_dir), device="cpu", batch_size=3, show_progress=False)
    prompts = ["hi ", "a longer prompt: ", "x", "why? "]
    responses = ["there", "ok", "a much longer response text", "because"]
    batched = judge.score(prompts, responses)
    single = np.array([reward_scores(judge.model, judge.tokenizer, [p], [r], progress=False)[0]
                       for p, r in zip(prompts, responses)])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    assert judge.tokenizer.padding_side == "right"  # restored
    verdicts = judge.compare(prompts, responses, responses[::-1])
    other = judge.score(prompts, responses[::-1])
    expected = np.where(batched - other > 1e-9, "win", np.where(other - batched > 1e-9, "loss", "tie"))
    assert [v.outcome for v in verdicts] == list(expected)


def test_reward_model_judge_unloadable_is_one_sentence(tmp_path):
    with pytest.raises(TifkitError, match="(?i)reward model.*does not exist") as e:
        RewardModelJudge(str(tmp_path / "missing"), device="cpu")
    assert "\n" not in str(e.value)
    with pytest.raises(TifkitError, match="(?i)could not load reward model"):
        RewardModelJudge("no-such-org/no-such-reward-model", device="cpu")


# ---------------------------------------------------------------------------------- LLM judge


@pytest.fixture
def serve(monkeypatch):
    monkeypatch.setenv("TIFKIT_TEST_KEY", "sk-test")
    servers = []

    def start(behave):
        servers.append(FakeServer(behave))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def make_judge(server, **kw):
    kw = {"api_key_env": "TIFKIT_TEST_KEY", "timeout": 5, "max_retries": 2,
          "requests_per_minute": 0, "concurrency": 1, "backoff_base": 0.01,
          "show_progress": False, **kw}
    return LLMJudge(server.url, "judge-model", **kw)


def prefers_good(n, message):
    """A fair judge: picks whichever shown response contains GOOD; rates GOOD 8, else 3."""
    if "[Response A]" not in message:
        return 200, "Rating: 8" if "GOOD" in message else "Rating: 3", 0, {}
    a = message.split("[Response A]")[1].split("[Response B]")[0]
    b = message.split("[Response B]")[1]
    if ("GOOD" in a) == ("GOOD" in b):
        return 200, "Both are similar.\nVerdict: tie", 0, {}
    return 200, "Verdict: A" if "GOOD" in a else "**Verdict:** B", 0, {}


def test_llm_judge_good_verdicts_both_orders(serve):
    server = serve(prefers_good)
    judge = make_judge(server)
    prompts = ["q1", "q2", "q3"]
    verdicts = judge.compare(prompts, ["GOOD a", "bad", "GOOD c"], ["bad", "GOOD b", "GOOD d"])
    assert [v.outcome for v in verdicts] == ["win", "loss", "tie"]
    assert len(server.calls) == 6  # both orders for each prompt
    assert server.calls[0]["auth"] == "Bearer sk-test"
    assert server.calls[0]["body"]["model"] == "judge-model"
    assert verdicts[0].raw["parsed_ab"] == "A" and verdicts[0].raw["parsed_ba"] == "B"
    np.testing.assert_array_equal(judge.score(prompts[:2], ["GOOD", "meh"]), [8.0, 3.0])
    assert judge.stats.n_unparsable == judge.stats.n_errors == judge.stats.n_inconsistent == 0


def test_llm_judge_position_bias_cancels(serve):
    server = serve(lambda n, m: (200, "Verdict: A", 0, {}))
    judge = make_judge(server)
    verdicts = judge.compare(["q1", "q2"], ["x", "y"], ["z", "w"])
    assert [v.outcome for v in verdicts] == ["tie", "tie"]
    assert judge.stats.n_inconsistent == 2


def test_llm_judge_garbage_is_tie_and_reported(serve):
    server = serve(lambda n, m: (200, "I cannot decide, both have merit.", 0, {}))
    judge = make_judge(server)
    verdicts = judge.compare(["q"], ["x"], ["y"])
    assert verdicts[0].outcome == "tie" and verdicts[0].raw["parsed_ab"] is None
    assert judge.stats.n_unparsable == 2
    scores = judge.score(["q"], ["x"])
    assert np.isnan(scores[0]) and judge.stats.n_unparsable == 3


def test_llm_judge_timeout_is_an_error_not_a_crash(serve):
    server = serve(lambda n, m: (200, "Verdict: A", 1.0, {}))
    judge = make_judge(server, timeout=0.2, max_retries=1)
    verdicts = judge.compare(["q"], ["x"], ["y"])
    assert verdicts[0].outcome == "error" and "attempts" in verdicts[0].error
    assert judge.stats.n_timeouts == 2 and judge.stats.n_errors == 1
    assert judge.stats.n_retries == 1


def test_llm_judge_retries_429_and_respects_retry_after(serve):
    def behave(n, m):
        if n == 0:
            return 429, "slow down", 0, {"Retry-After": "0.3"}
        return prefers_good(n, m)

    server = serve(behave)
    judge = make_judge(server, backoff_base=0.0)
    t0 = time.monotonic()
    verdicts = judge.compare(["q"], ["GOOD"], ["bad"])
    assert time.monotonic() - t0 >= 0.3
    assert verdicts[0].outcome == "win"
    assert judge.stats.n_retries == 1 and judge.stats.n_requests == 3


def test_llm_judge_persistent_500_keeps_generations(serve, tmp_path):
    server = serve(lambda n, m: (500, "boom", 0, {}))
    judge = make_judge(server, max_retries=1)
    prompts = ["q1", "q2"]
    result = evaluate_policy(["p1", "p2"], ["r1", "r2"], None, prompts, judge,
                             EvalParams(n_bootstrap=50), table_path=tmp_path / "t.parquet")
    assert result.counts["error"] == 2
    assert result.judge_stats["n_errors"] == 4  # 2 verdicts + 2 single scores
    assert np.isnan(result.winrate.estimate) and np.isnan(result.single_score.estimate)
    import pandas as pd

    table = pd.read_parquet(tmp_path / "t.parquet")
    assert table["response_policy"].tolist() == ["p1", "p2"]
    assert table["response_ref"].tolist() == ["r1", "r2"]
    assert set(table["verdict"]) == {"error"} and table["judge_error"].str.contains("HTTP 500").all()


def test_llm_judge_stops_when_the_endpoint_is_down(serve):
    server = serve(lambda n, m: (503, "down", 0, {}))
    judge = make_judge(server, max_retries=0, max_consecutive_failures=2)
    with pytest.raises(TifkitError, match="in a row"):
        judge.compare(["q"] * 5, ["x"] * 5, ["y"] * 5)
    assert len(server.calls) == 2  # stopped early, no further calls


def test_llm_judge_bad_key_and_missing_key(serve, monkeypatch):
    server = serve(lambda n, m: (401, "no", 0, {}))
    with pytest.raises(TifkitError, match="HTTP 401"):
        make_judge(server).compare(["q"], ["x"], ["y"])
    monkeypatch.delenv("TIFKIT_NO_SUCH_KEY", raising=False)
    with pytest.raises(TifkitError, match="TIFKIT_NO_SUCH_KEY"):
        LLMJudge(server.url, "m", api_key_env="TIFKIT_NO_SUCH_KEY")
    judge = LLMJudge(server.url, "m", api_key_env="")  # keyless local endpoint
    assert "Authorization" not in judge._headers


def test_llm_judge_reply_cache_resumes_without_calls(serve, tmp_path):
    server = serve(prefers_good)
    cache = tmp_path / "replies.jsonl"
    first = make_judge(server, cache_path=cache).compare(["q"], ["GOOD"], ["bad"])
    assert len(server.calls) == 2 and len(cache.read_text().splitlines()) == 2
    judge = make_judge(server, cache_path=cache)
    again = judge.compare(["q"], ["GOOD"], ["bad"])
    assert len(server.calls) == 2 and judge.stats.n_cached == 2
    assert [v.outcome for v in again] == [v.outcome for v in first] == ["win"]


def test_llm_judge_rate_limit_spaces_requests(serve):
    server = serve(prefers_good)
    judge = make_judge(server, requests_per_minute=600, concurrency=2)  # one call per 0.1 s
    t0 = time.monotonic()
    judge.score([f"q{i}" for i in range(4)], ["GOOD"] * 4)
    assert len(server.calls) == 4
    assert time.monotonic() - t0 >= 0.29


def test_parsers():
    assert parse_pairwise("Verdict: A") == "A"
    assert parse_pairwise("reasoning... **Verdict:** B") == "B"
    assert parse_pairwise("verdict: Tie") == "tie"
    assert parse_pairwise("[[A]]") == "A"
    assert parse_pairwise("Verdict: a great answer") is None
    assert parse_pairwise("no idea") is None and parse_pairwise(None) is None
    assert parse_rating("Rating: 7") == 7 and parse_rating("Rating: [[9]]") == 9
    assert parse_rating("6") == 6 and parse_rating("Rating: 42") is None
    assert parse_rating("great") is None
