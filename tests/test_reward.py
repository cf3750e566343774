"""Reward-model baseline: learns a synthetic ranking, save/load round trip, padding correctness, errors."""
import random

import numpy as np
import pandas as pd
import pytest
import torch

from tifkit import TifkitError
from tifkit.reward import load_reward_model, reward_scores, rm_margins, train_reward_model
from tifkit.tokenizer import build_char_tokenizer


def sorting_pairs(n, seed):
    """Prompt 'sort xyz:'; chosen is the sorted letters, rejected a different permutation."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        letters = rng.sample("abcdefghij", 5)
        good, bad = "".join(sorted(letters)), None
        while bad is None or bad == good:
            bad = "".join(rng.sample(letters, 5))
        rows.append({"prompt": f"sort {''.join(letters)}:", "chosen": good, "rejected": bad})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tok = build_char_tokenizer()
    out = tmp_path_factory.mktemp("rm") / "model"
    model = train_reward_model(
        sorting_pairs(400, seed=0), tok, steps=120, lr=3e-3, batch_size=32, seed=0, hidden_size=32,
        out_dir=out, progress=False,
    )
    yield model, tok, out
    torch.set_num_threads(threads)


def test_learns_to_rank_held_out_pairs(trained):
    model, tok, _ = trained
    margins = rm_margins(model, tok, sorting_pairs(200, seed=1), progress=False)
    assert margins.shape == (200,)
    assert (margins > 0).mean() > 0.8


def test_save_load_round_trip_gives_identical_scores(trained):
    model, tok, out = trained
    loaded, tok2 = load_reward_model(out, device="cpu")
    assert loaded.config.pad_token_id == tok.pad_token_id
    df = sorting_pairs(20, seed=2)
    np.testing.assert_array_equal(rm_margins(model, tok, df), rm_margins(loaded, tok2, df))


def test_batched_scores_equal_one_at_a_time(trained):
    model, tok, _ = trained
    prompts = ["sort cba:", "a", "sort hgfedcba:", "x"]
    responses = ["abc", "b" * 30, "abcdefgh", ""]  # very different lengths -> heavy padding
    batched = reward_scores(model, tok, prompts, responses, batch_size=4)
    single = np.array([reward_scores(model, tok, [p], [r], batch_size=1)[0] for p, r in zip(prompts, responses)])
    np.testing.assert_allclose(batched, single, atol=1e-5, rtol=1e-5)


def test_training_is_seeded():
    tok = build_char_tokenizer()
    df = sorting_pairs(40, seed=3)
    a, b = (train_reward_model(df, tok, steps=3, batch_size=8, seed=7, hidden_size=16, progress=False) for _ in "ab")
    np.testing.assert_array_equal(rm_margins(a, tok, df), rm_margins(b, tok, df))


def test_load_errors_are_one_sentence(tmp_path):
    with pytest.raises(TifkitError, match="does not exist"):
        load_reward_model(tmp_path / "missing")
    with pytest.raises(TifkitError, match="Could not load reward model 'nobody-xyz/no-such-rm'"):
        load_reward_model("nobody-xyz/no-such-rm", local_files_only=True)
    with pytest.raises(TifkitError, match="lack column"):
        train_reward_model(pd.DataFrame({"prompt": ["a"]}), build_char_tokenizer(), steps=1)
