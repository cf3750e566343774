"""tifkit.losses: the objectives, IRM and IF's measurements against an explicit per-pair loop in
plain Python math (no numpy/torch vectorization, no tifkit formula)."""
import math

import numpy as np
import pytest
import torch

from tifkit import TifkitError
from tifkit.config import Params, ScoreParams, TrainParams
from tifkit.losses import (LOSS_TYPES, MEASURES, Objective, objective_from_params, pair_loss, require_objective,
                           train_objective)

BETA = 0.3


def slow_margin(pw, pl, rw, rl, beta):
    return beta * ((pw - rw) - (pl - rl))


def slow_loss(h, kind):
    """One pair's loss of its margin h, written from the definitions."""
    if kind == "sigmoid":  # -log(1 / (1 + e^-h)), in the form that does not overflow
        return math.log1p(math.exp(-h)) if h > -30 else -h + math.log1p(math.exp(h))
    if kind == "hinge":
        return max(0.0, 1.0 - h)
    if kind == "margin":
        return -h
    raise AssertionError(kind)


def slow_dloss_dh(h, kind):
    """d loss / d h of one pair: DPO -sigmoid(-h), SLiC -1[h < 1], margin -1."""
    if kind == "sigmoid":
        return -1.0 / (1.0 + math.exp(h))
    if kind == "hinge":
        return -1.0 if h < 1 else 0.0
    return -1.0


# which loss each side of IF takes, written out here from docs/SCORES.md (not from tifkit.losses)
SIDES = {("sigmoid", "val_loss"): ("sigmoid", "sigmoid"), ("sigmoid", "val_margin"): ("sigmoid", "margin"),
         ("sigmoid", "unweighted"): ("margin", "margin"), ("hinge", "val_loss"): ("hinge", "hinge"),
         ("hinge", "val_margin"): ("hinge", "margin"), ("hinge", "unweighted"): ("margin", "margin")}


@pytest.fixture
def logps():
    rng = np.random.default_rng(3)
    return tuple(rng.normal(-20, 4, 40) for _ in range(4))


@pytest.mark.parametrize("loss_type,measure", list(SIDES))
def test_objective_against_per_pair_loop(logps, loss_type, measure):
    obj = Objective(loss_type, BETA, measure)
    train_side, val_side = SIDES[loss_type, measure]
    pw, pl, rw, rl = logps
    irm, loss, tr, va = obj.irm(*logps), obj.pair_loss(*logps), obj.training_side(*logps), obj.measurement(*logps)
    for i in range(len(pw)):
        h = slow_margin(float(pw[i]), float(pl[i]), float(rw[i]), float(rl[i]), BETA)
        assert irm[i] == pytest.approx(h, rel=1e-12, abs=1e-12)
        assert loss[i] == pytest.approx(slow_loss(h, loss_type), rel=1e-12, abs=1e-12)
        assert tr[i] == pytest.approx(slow_loss(h, train_side), rel=1e-12, abs=1e-12)
        assert va[i] == pytest.approx(slow_loss(h, val_side), rel=1e-12, abs=1e-12)
    # torch inputs give torch outputs with the same values, and the gradient of each side w.r.t. the
    # policy's chosen log-prob is beta * dloss/dh, pair by pair
    t = [torch.tensor(x, requires_grad=(k == 0)) for k, x in enumerate(logps)]
    for side, kind in ((obj.training_side, train_side), (obj.measurement, val_side)):
        out = side(*t)
        assert torch.is_tensor(out)
        np.testing.assert_allclose(out.detach().numpy(), [slow_loss(float(h), kind) for h in irm], rtol=1e-12, atol=1e-12)
        (g,) = torch.autograd.grad(out.sum(), t[0])
        want = [BETA * slow_dloss_dh(float(h), kind) for h in irm]
        np.testing.assert_allclose(g.numpy(), want, rtol=1e-12, atol=1e-12)


def test_pair_loss_is_the_objective_loss_bit_for_bit(logps):
    # the functional form (influence.dpo_loss_per_pair's) and the Objective method are one computation
    for lt in ("sigmoid", "hinge"):
        assert np.array_equal(pair_loss(*logps, BETA, lt), Objective(lt, BETA).pair_loss(*logps))
    from tifkit.influence import dpo_loss_per_pair, implicit_reward_margin

    assert np.array_equal(dpo_loss_per_pair(*logps, BETA, "hinge"), Objective("hinge", BETA).pair_loss(*logps))
    assert np.array_equal(implicit_reward_margin(*logps, BETA), Objective(beta=BETA).irm(*logps))


def test_objective_from_params_and_trl_names():
    p = Params(train=TrainParams(objective="slic", beta=0.25), score=ScoreParams(if_measure="val_margin"))
    obj = objective_from_params(p)
    assert (obj.loss_type, obj.beta, obj.measure) == ("hinge", 0.25, "val_margin")
    assert obj.objective == "slic" and obj.trl_loss_type == "hinge"
    assert train_objective(p.train) == Objective("hinge", 0.25, "val_loss")
    assert objective_from_params(p, measure="unweighted").measure == "unweighted"
    assert {Objective(v).objective: v for v in LOSS_TYPES.values()} == LOSS_TYPES
    with pytest.raises(TifkitError, match="train.objective"):
        train_objective(TrainParams(objective="ipo"))
    with pytest.raises(TifkitError, match="if_measure"):
        Objective("sigmoid", 0.1, "val_cosine")
    with pytest.raises(TifkitError, match="loss_type"):
        Objective("ipo")
    with pytest.raises(dataclasses_frozen_error()):
        obj.beta = 1.0  # frozen: one value passed around, never changed on the way


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_only_an_objective_is_accepted():
    """The older forms (a bare beta, loss_type / measure strings) are gone: anything but an Objective
    is a TypeError naming the parameter."""
    o = Objective("hinge", 0.5, "val_margin")
    assert require_objective(o) is o
    # the linear loss -h on both sides is the "unweighted" measurement
    assert Objective("sigmoid", 0.1, "unweighted").sides == ("margin", "margin")
    for bad in (0.1, "sigmoid", None):
        with pytest.raises(TypeError, match="`beta_or_objective` takes a tifkit.losses.Objective"):
            require_objective(bad, "beta_or_objective")
    assert set(MEASURES) == {m for _, m in SIDES}


def test_scores_refuse_an_objective_that_disagrees_with_if_measure():
    from tifkit.scores import scoring_objective

    sp = ScoreParams(if_measure="val_margin")
    o = Objective("hinge", 0.2, "val_margin")
    assert scoring_objective(sp, o) is o
    with pytest.raises(TypeError, match="`objective` takes a tifkit.losses.Objective"):
        scoring_objective(sp, 0.2)
    with pytest.raises(TifkitError, match="score.if_measure"):
        scoring_objective(sp, Objective("sigmoid", 0.2, "val_loss"))
