"""The built-in world: determinism, oracle sanity, label noise at its parameter, ground truth kept apart."""
import numpy as np
import pandas as pd
import pytest

from tifkit.world import WorldConfig, build_world, make_prompt, oracle_reward, target_of

SMALL = dict(n_sft=200, n_train=1000, n_val=100, n_test=50, n_rm=100)


def test_same_seed_same_world_and_hash():
    a, b = build_world(WorldConfig(**SMALL), 3), build_world(WorldConfig(**SMALL), 3)
    assert a.hash == b.hash
    for name in ("sft", "train", "val", "test", "rm_train"):
        assert getattr(a, name).equals(getattr(b, name))
    assert build_world(WorldConfig(**SMALL), 4).hash != a.hash


def test_splits_are_independent_streams():
    # changing the size of D_tr does not change D_val or the test prompts
    a = build_world(WorldConfig(**SMALL), 0)
    b = build_world(WorldConfig(**{**SMALL, "n_train": 500}), 0)
    assert a.val.equals(b.val) and a.test.equals(b.test)


def test_oracle_sanity():
    p = make_prompt("dbca")
    assert target_of(p) == "abcd"
    assert oracle_reward(p, "abcd") == 1.0
    assert oracle_reward(p, "") == 0.0
    assert oracle_reward(p, "abcd!!") == pytest.approx(4 / 6)  # the verbose sign-off costs credit
    assert oracle_reward(p, "abdc") == pytest.approx(0.5)
    assert oracle_reward(p, "abc") == pytest.approx(3 / 4)
    w = build_world(WorldConfig(**SMALL), 0)
    for col in ("gt_reward_chosen", "gt_reward_rejected"):
        assert w.train[col].between(0, 1).all()
    # the stored ground truth is the oracle of the stored text
    r = [oracle_reward(p, y) for p, y in zip(w.train.prompt, w.train.chosen)]
    np.testing.assert_allclose(r, w.train.gt_reward_chosen)
    # SFT demonstrations are of mixed quality; many carry the verbose sign-off the SFT model inherits
    cfg = w.config
    letters_right = [y.removesuffix(cfg.verbose_suffix) == target_of(p) for p, y in zip(w.sft.prompt, w.sft.response)]
    assert 0.4 < np.mean(letters_right) < 0.8
    assert w.sft.response.str.endswith(cfg.verbose_suffix).mean() == pytest.approx(cfg.sft_verbose, abs=0.08)
    assert w.sft.gt_reward.mean() < 0.9


@pytest.mark.parametrize("flip_rate", [0.0, 0.1, 0.3])
def test_label_noise_rate_matches_parameter(flip_rate):
    cfg = WorldConfig(**{**SMALL, "flip_rate": flip_rate, "bt_temperature": 1e-6})
    w = build_world(cfg, 1)
    n = cfg.n_train
    # exactly round(flip_rate * n) pairs are forced against the oracle ...
    assert abs(w.train.gt_forced_flip.sum() - round(flip_rate * n)) <= 1
    # ... and with a near-deterministic Bradley-Terry label those are the wrongly labelled pairs
    assert w.train.gt_flipped.mean() == pytest.approx(flip_rate, abs=0.01)
    assert not (w.train.gt_flipped & w.train.gt_tie).any()


def test_systematic_noise_hits_long_verbose_pairs():
    cfg = WorldConfig(**{**SMALL, "flip_rate": 0.15, "systematic": 0.8, "bt_temperature": 1e-6})
    w = build_world(cfg, 2)
    f = w.train[w.train.gt_flipped]
    n_letters = f.prompt.str.len() - len("sort :")
    longer_chosen = f.chosen.str.len() > f.rejected.str.len()
    # most mislabelled pairs prefer the longer (worse) answer on a long prompt
    assert (longer_chosen & (n_letters >= cfg.bias_min_len)).mean() >= 0.75
    # the clean pairs prefer the shorter answer more often than not when lengths differ
    c = w.train[~w.train.gt_flipped & (w.train.chosen.str.len() != w.train.rejected.str.len())]
    assert (c.chosen.str.len() < c.rejected.str.len()).mean() > 0.5


def test_validation_set_has_no_forced_flips_by_default_and_configurable():
    v = build_world(WorldConfig(**SMALL), 0).val
    assert v.gt_forced_flip.sum() == 0
    # only Bradley-Terry sampling on close pairs mislabels D_val: a few percent
    assert v.gt_flipped.mean() < 0.08
    w = build_world(WorldConfig(**{**SMALL, "val_flip_rate": 0.2}), 0)
    assert w.val.gt_forced_flip.sum() == 20


def test_annotation_scores_noisy_but_informative():
    w = build_world(WorldConfig(**SMALL), 0)
    t = w.train
    assert t.score_chosen.between(1, 10).all() and t.score_rejected.between(1, 10).all()
    gap = t.score_chosen - t.score_rejected
    assert (gap >= 0).all()  # UltraFeedback-style: the label agrees with the annotator's scores
    true_gap = t.gt_reward_chosen - t.gt_reward_rejected
    rho = np.corrcoef(gap, true_gap)[0, 1]
    assert 0.3 < rho < 0.99


def test_bad_world_config_is_rejected():
    with pytest.raises(ValueError, match="flip_rate"):
        WorldConfig(flip_rate=1.5)
    with pytest.raises(ValueError, match="min_len"):
        WorldConfig(min_len=5, max_len=3)


def test_sft_key_covers_exactly_what_shapes_the_demonstrations():
    """SFT models are cached by sft_key: worlds that differ only in their pairs share the demos (and the
    key); a field in SFT_FIELDS changes both."""
    from dataclasses import fields, replace

    from tifkit.world import SFT_FIELDS, sft_key

    base = WorldConfig(n_sft=200, n_train=50, n_val=10, n_test=10, n_rm=10)
    demos = build_world(base, 3).sft
    for other in (replace(base, flip_rate=0.3, systematic=0.0, n_train=80, n_val=20, n_test=5, n_rm=30,
                          val_flip_rate=0.1, bt_temperature=0.2, p_verbose=0.9, annotation_noise=2.0),):
        pd.testing.assert_frame_equal(build_world(other, 3).sft, demos)
        assert sft_key(other, 3) == sft_key(base, 3)
    assert set(SFT_FIELDS) <= {f.name for f in fields(WorldConfig)}
    for changed in (replace(base, sft_exact=0.9), replace(base, n_sft=150), replace(base, sft_verbose=0.1)):
        assert sft_key(changed, 3) != sft_key(base, 3)
        assert not build_world(changed, 3).sft.equals(demos)
    assert sft_key(base, 4) != sft_key(base, 3)
