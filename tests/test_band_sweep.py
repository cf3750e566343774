"""The band-position sweep (tifkit.experiments): TIF bands of fixed width moved along IF, checked
against a rank loop and against the rules they coincide with; subsets trained in worker processes
give the numbers of one process."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tifkit import TifkitError
from tifkit import experiments as E
from tifkit.config import SelectParams, load_params
from tifkit.select import select

ROOT = Path(__file__).resolve().parents[1]


def _table(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "if": rng.normal(size=n)})


@pytest.mark.parametrize("center", [0.0, 0.1, 0.32, 0.41, 0.5, 0.77, 1.0])
@pytest.mark.parametrize("width", [0.34, 0.64])
def test_band_mask_is_the_rank_window(center, width):
    """Slow path: sort by IF, keep ranks [start, start + k) with start = round(c n - k / 2) clamped."""
    t = _table()
    n, k = len(t), int(round(width * len(t)))
    start = int(round(center * n - k / 2))
    start = min(max(start, 0), n - k)
    ranked = sorted(range(n), key=lambda i: (t["if"][i], i))
    expected = np.zeros(n, dtype=bool)
    for r, i in enumerate(ranked):
        if start <= r < start + k:
            expected[i] = True
    got = E.band_mask(t, width, center)
    assert got.sum() == k
    np.testing.assert_array_equal(got, expected)
    edges = E.band_selection(t, width, center).bands["if"]
    assert edges["lo"] == pytest.approx(start / n) and edges["hi"] == pytest.approx((start + k) / n)


def test_band_ends_are_top_if_and_bottom_if_and_middle_is_tif():
    t = _table(2000, 3)
    sp = SelectParams(tif_lo=0.1, tif_hi=0.3)  # explicit edges must not leak into the sweep
    np.testing.assert_array_equal(E.band_mask(t, 0.64, 0.68, sp), select(t, rule="top-if", keep=0.64).mask)
    np.testing.assert_array_equal(E.band_mask(t, 0.64, 0.5, sp), select(t, rule="tif", keep=0.64).mask)
    low = t["if"].rank(method="first").to_numpy() <= 1280
    np.testing.assert_array_equal(E.band_mask(t, 0.64, 0.32, sp), low)
    assert not np.array_equal(E.band_mask(t, 0.64, 0.41), E.band_mask(t, 0.64, 0.5))


def test_band_specs_and_errors():
    s = E.band_specs(0.34, [0.17, 0.5, 0.83])
    assert list(s) == ["band@0.17", "band@0.50", "band@0.83"] and s["band@0.83"] == ("band", 0.34, 0.83)
    assert E.group_specs(3) == {"small": ("if-group", 3, "small"), "medium": ("if-group", 3, "medium"),
                                "large": ("if-group", 3, "large")}
    with pytest.raises(TifkitError, match="width"):
        E.band_specs(1.5)
    with pytest.raises(TifkitError, match="centre"):
        E.band_specs(0.5, [0.2, 1.2])
    with pytest.raises(TifkitError, match="same label"):
        E.band_specs(0.5, [0.5, 0.501])
    with pytest.raises(TifkitError, match="no subsets"):
        E.subset_experiment(None, [0], {})


@pytest.mark.slow
def test_subset_experiment_workers_match_one_process(toy, tmp_path):
    """Two bands, an IF group and the full-data rule, in 2 worker processes from an empty cache and in
    this process (in the shared toy root, whose stages are all trained in this process): the same
    curves, summaries and verdicts; bands have their width, IF edges and D_val curves from the warm-up
    model; a rerun trains nothing."""
    specs = {**E.band_specs(0.5, [0.25, 0.75]), "medium": ("if-group", 3, "medium"), "full": ("rule", "full", 1.0)}
    one = E.subset_experiment(toy.params(), [0], specs, workers=1)
    two = E.subset_experiment(toy.params(root=tmp_path / "two"), [0], specs, workers=2)
    for key in ("curves", "summary", "per_prompt"):
        pd.testing.assert_frame_equal(one[key], two[key])
    np.testing.assert_allclose(one["winrates"].winrate, two["winrates"].winrate)
    s = one["summary"].set_index("group")
    assert list(s.index) == list(specs) and s.loc["band@0.25", "n"] == 24 and s.loc["full", "n"] == 48
    assert s.loc["band@0.25", "lo_pct"] == 0.0 and s.loc["band@0.75", "hi_pct"] == 1.0
    assert s.loc["band@0.25", "if_max"] <= s.loc["band@0.75", "if_min"]
    c = one["curves"]
    assert set(c.group) == {"band@0.25", "band@0.75", "medium"}  # a rule has no curves
    assert c[c.step == 0].val_loss.nunique() == 1 and (c.groupby("group").step.max() > 0).all()
    pp = one["per_prompt"]
    assert pp.groupby("rule").size().to_dict() == {n: 12 for n in specs}
    w = one["winrates"].set_index("name")
    for n in specs:
        assert w.loc[n, "winrate"] == pytest.approx(pp[pp.rule == n].verdict.mean())
    again = E.band_sweep(toy.params(), [0], 0.5, [0.25, 0.75], workers=1)
    pd.testing.assert_frame_equal(again["curves"], c[c.group.str.startswith("band")].reset_index(drop=True))


def test_group_model_equals_the_pipelines_model_on_the_same_pairs(tmp_path):
    """IF groups train through pipeline.train_on: with run.model_seed set (the init control), a group's
    model has the same weights as the continuation the pipeline (and the batch) trains on those pairs;
    both are seeded by ctx.train_seed, not the world seed."""
    from safetensors.torch import load_file

    from tifkit.pipeline import continue_stage, prepare

    p = load_params(ROOT / "params/tiny.yaml", [f"run.root={tmp_path}", "world.n_sft=120", "world.n_train=32",
                                                 "world.n_val=8", "world.n_test=4", "world.n_rm=8", "sft.steps=10",
                                                 "model.hidden_size=32", "train.batch_size=8",
                                                 "run.show_progress=false", "run.model_seed=7"])
    ctx = prepare(p, 0)
    assert ctx.train_seed == 7 != ctx.seed
    mask = np.arange(len(ctx.train)) % 2 == 0
    group = E.train_on_groups(ctx, {"even": mask}, n_points=2)
    pipe = continue_stage(ctx, "even", mask)
    a = load_file(group.model_dirs["even"] / "model.safetensors")
    b = load_file(pipe / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (group.curves.step > 0).any()  # the group logged D_val while training


def test_scoring_cost_scores_with_the_runs_measure_and_reduction(tmp_path):
    """scoring_cost times what scoring computes: the run's score.if_measure and score.reduction (its
    LossDiff, IRM and IF equal score_table's with the same parameters, and differ from the defaults')."""
    import dataclasses

    from tifkit.pipeline import load_stage, prepare, reference, val_stage, warmup_stage
    from tifkit.scores import score_table

    p = load_params(ROOT / "params/tiny.yaml", [f"run.root={tmp_path}", "world.n_sft=120", "world.n_train=16",
                                                 "world.n_val=8", "world.n_test=4", "world.n_rm=8", "sft.steps=10",
                                                 "model.hidden_size=32", "train.batch_size=8",
                                                 "run.show_progress=false", "score.if_measure=val_margin",
                                                 "score.reduction=mean"])
    ctx = prepare(p, 0)
    _, got = E.scoring_cost(ctx, n_pairs=6, methods=("lossdiff-irm", "if-batched"), return_scores=True)
    models = [load_stage(ctx, warmup_stage(ctx)), reference(ctx), load_stage(ctx, val_stage(ctx), trainable=False)]
    sp = dataclasses.replace(p.score, max_length=p.train.max_length)
    want = score_table(*models, ctx.tokenizer, ctx.train.iloc[:6], ctx.val, sp, ctx.objective, show_progress=False)
    np.testing.assert_allclose(got["lossdiff-irm"][0], want["irm"], rtol=1e-12)
    np.testing.assert_allclose(got["lossdiff-irm"][1], want["lossdiff"], rtol=1e-12)
    np.testing.assert_allclose(got["if-batched"], want["if"], rtol=1e-5, atol=1e-9 * np.abs(want["if"]).max())
    default = score_table(*models, ctx.tokenizer, ctx.train.iloc[:6], ctx.val,
                          dataclasses.replace(sp, if_measure="val_loss", reduction="sum"),
                          dataclasses.replace(ctx.objective, measure="val_loss"), show_progress=False)
    assert not np.allclose(default["if"], want["if"]) and not np.allclose(default["irm"], want["irm"])
