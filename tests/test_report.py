"""tifkit.report, conclusions, experiments, notebooks: AUROC against explicit pair counting, score reports and groups on synthetic
tables with known answers, model dependence, conclusions, and one toy group-training run."""
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tifkit import TifkitError
from tifkit import conclusions as C, experiments as E, notebooks as N, report as R

ROOT = Path(__file__).resolve().parents[1]


def auroc_by_pairs(scores, positives, higher_is_positive=False):
    """O(n^2): share of (positive, negative) pairs ranked correctly, ties 1/2."""
    s = np.asarray(scores, dtype=float)
    s = s if higher_is_positive else -s
    pos, neg = s[np.asarray(positives, bool)], s[~np.asarray(positives, bool)]
    total = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return total / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("higher", [False, True])
def test_auroc_matches_explicit_pair_count(seed, higher):
    rng = np.random.default_rng(seed)
    n = 60
    y = rng.random(n) < 0.3
    s = rng.integers(0, 6, size=n).astype(float) - 1.5 * y  # many ties, some signal
    assert R.auroc(s, y, higher) == pytest.approx(auroc_by_pairs(s, y, higher), abs=1e-12)


def test_auroc_edges():
    assert R.auroc([1, 2, 3, 4], [True, True, False, False]) == 1.0  # low score = positive
    assert R.auroc([1, 2, 3, 4], [True, True, False, False], higher_is_positive=True) == 0.0
    assert R.auroc([5, 5, 5], [True, False, True]) == 0.5
    assert np.isnan(R.auroc([1, 2], [False, False]))
    with pytest.raises(TifkitError):
        R.auroc([1.0, np.nan], [True, False])
    with pytest.raises(TifkitError):
        R.auroc([1.0, 2.0], [True])


def synthetic_table(n=200, seed=0):
    """IF distinct values; LossDiff = -IF (same middle band, Spearman -1), IRM = IF^3 (same ranks),
    rm_margin and the annotation gap = IF (same as top-IF), the lowest 20% of IF mislabelled."""
    rng = np.random.default_rng(seed)
    x = rng.permutation(np.linspace(-1, 1, n))
    return pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "if": x, "lossdiff": -x, "irm": x ** 3,
                         "rm_margin": x, "score_chosen": x + 5, "score_rejected": np.full(n, 5.0),
                         "gt_flipped": x < np.quantile(x, 0.2)})


def test_score_report_known_answers():
    t = synthetic_table()
    rep = R.score_report(t, keep=0.64)
    assert list(rep.columns) == ["section", "name", "statistic", "value", "paper", "paper_lo", "paper_hi"]
    get = lambda sec, name, stat="": R.report_value(rep, sec, name, stat)  # noqa: E731
    # AUROC: IF, IRM, rm margin, gap flag the low-IF flipped pairs perfectly; LossDiff is reversed
    for name in ("if", "irm", "rm_margin", "annotation_gap"):
        assert get("auroc", name) == pytest.approx(1.0)
    assert get("auroc", "lossdiff") == pytest.approx(0.0)
    assert get("correlation", "lossdiff", "pearson") == pytest.approx(-1.0)
    assert get("correlation", "lossdiff", "spearman") == pytest.approx(-1.0)
    assert get("correlation", "irm", "spearman") == pytest.approx(1.0)
    assert 0.8 < get("correlation", "irm", "pearson") < 1.0
    # middle bands of the same ranks (or reversed ranks with n - k even) are TIF's band: overlap 1
    for rule in ("lossdiff-irm", "lossdiff", "irm"):
        assert get("overlap", rule) == pytest.approx(1.0)
    # top 128 of 200 = ranks [72, 200); TIF band = ranks [36, 164): 92 shared of 128
    for rule in ("top-if", "rm-margin", "annotation-gap"):
        assert get("overlap", rule) == pytest.approx(92 / 128)
    assert 0 < get("overlap", "random") < 1
    paper = rep.set_index(["section", "name", "statistic"]).paper
    assert paper[("correlation", "lossdiff", "pearson with IF")] == "0.77"
    assert paper[("correlation", "irm", "spearman with IF")] == "0.67"
    assert paper[("overlap", "lossdiff-irm", "overlap with TIF at keep 0.64")] == "0.73-0.78"
    assert paper[("overlap", "irm", "overlap with TIF at keep 0.64")] == "0.60-0.70"


def test_score_report_skips_missing_columns():
    t = synthetic_table().drop(columns=["rm_margin", "score_chosen", "score_rejected", "gt_flipped"])
    rep = R.score_report(t)
    assert "auroc" not in set(rep.section)
    assert not {"rm-margin", "annotation-gap"} & set(rep.name)


def test_aggregate_over_seeds():
    reps = {s: R.score_report(synthetic_table(seed=s)) for s in (0, 1)}
    agg = R.aggregate(reps, ["section", "name", "statistic"])
    assert (agg.n_runs == 2).all() and "value_std" in agg and "paper" in agg
    assert len(agg) == len(reps[0])


def test_overlap_sweep_and_venn():
    t = synthetic_table()
    sw = R.overlap_sweep(t, keeps=(0.5, 0.64, 0.8))
    assert set(sw.keep) == {0.5, 0.64, 0.8}
    assert (sw[sw.rule == "lossdiff-irm"].overlap == 1.0).all()
    assert (sw.n_kept == (sw.keep * 200).round()).all()
    v = R.venn_counts(t, 0.64, rules=("tif", "top-if", "random"))
    assert sum(v[k] for k in ("100", "110", "101", "111")) == 128  # |TIF|
    assert sum(v[k] for k in ("010", "110", "011", "111")) == 128  # |top-IF|
    assert v["110"] + v["111"] == 92


def test_if_groups_sizes_and_order():
    t = synthetic_table(n=100)
    g = R.if_groups(t)
    assert list(g) == ["small", "medium", "large"]
    assert [int(m.sum()) for m in g.values()] == [34, 33, 33]
    assert (sum(m.astype(int) for m in g.values()) == 1).all()  # a partition
    assert t["if"][g["small"]].max() < t["if"][g["medium"]].min() < t["if"][g["large"]].min()
    g4 = R.if_groups(t, 4)
    assert list(g4) == ["q1", "q2", "q3", "q4"] and [int(m.sum()) for m in g4.values()] == [25] * 4
    s = R.group_summary(t, g)
    assert s.flipped_share.tolist()[0] == pytest.approx(20 / 34) and s.flipped_share.tolist()[2] == 0
    with pytest.raises(TifkitError):
        R.if_groups(t.drop(columns=["if"]))


def test_model_dependence_synthetic():
    t = synthetic_table(n=100)
    x = t.set_index("pair_id")["if"]
    same = t.sample(frac=1.0, random_state=1)  # same values, rows shuffled: aligned by pair_id
    opposite = t.assign(**{"if": -t["if"]})
    md = R.model_dependence({"a": t, "b": same, "c": opposite})
    assert md.spearman.loc["a", "b"] == pytest.approx(1.0) and md.pearson.loc["a", "c"] == pytest.approx(-1.0)
    assert md.tif_overlap.loc["a", "b"] == 1.0
    assert md.sign_disagreement.loc["a", "b"] == 0.0
    assert md.sign_disagreement.loc["a", "c"] == pytest.approx(1.0)  # no zeros among the values
    assert md.helps_hurts.loc["a", "c"] == pytest.approx(float((x > 0).mean()))
    assert np.allclose(md.sign_disagreement, md.sign_disagreement.T)
    pr = md.pairs()
    assert len(pr) == 3 and set(pr.columns) >= {"spearman", "tif_overlap", "sign_disagreement"}
    assert "reproduces" in C.conclude_model_dependence([md, md])  # two seeds; one seed is not a verdict
    assert "does not reproduce" in C.conclude_model_dependence([R.model_dependence({"a": t, "b": same})] * 2)
    assert C.conclude_model_dependence(md).startswith("On this one seed, claim 1 points the paper's way")
    rng = np.random.default_rng(0)
    noisy = t.assign(**{"if": t["if"] + 0.5 * rng.normal(size=len(t))})
    tight = R.model_dependence({"a": t, "b": noisy})  # within-family Spearman ~0.8
    loose = R.model_dependence({"a": t, "b": t.assign(**{"if": rng.normal(size=len(t))})})
    assert "families disagree more than initializations" in C.conclude_model_dependence(loose, control=tight)
    assert "only weakly" in C.conclude_model_dependence(loose, control=loose)
    with pytest.raises(TifkitError):
        R.model_dependence({"a": t})


def test_conclusions_follow_the_numbers():
    t = synthetic_table()
    rng = np.random.default_rng(0)
    good = t.assign(lossdiff=t["if"] + 0.3 * rng.normal(size=len(t)), irm=t["if"] + 1.0 * rng.normal(size=len(t)))
    one = C.conclude_correlation(R.score_report(good))  # one run: a direction, and no verdict
    assert one.startswith("On this one seed, claim 4 points the paper's way:") and one.endswith(C.ONE_SEED)
    swapped = good.assign(lossdiff=good.irm, irm=good.lossdiff)
    assert "only in part" in C.conclude_correlation(R.score_report(swapped))
    assert "does not point the paper's way" in C.conclude_correlation(R.score_report(t))  # LossDiff = -IF
    # over seeds: a positive mean whose t-interval reaches below 0 is not shown
    noisy = {s: R.score_report(good.assign(irm=good["if"] * (1 if s % 2 else -0.8) + rng.normal(size=len(t))))
             for s in range(4)}
    text = C.conclude_correlation(R.aggregate(noisy, ["section", "name", "statistic"]))
    assert text.startswith("Claim 4 reproduces only in part: LossDiff correlates positively with IF, IRM does not")
    assert "over 4 seeds" in text
    steady = R.aggregate({s: R.score_report(good.assign(irm=good["if"] + rng.normal(size=len(t)))) for s in range(3)},
                         ["section", "name", "statistic"])
    assert C.conclude_correlation(steady).startswith("Claim 4 reproduces:")
    sw = pd.DataFrame({"keep": [0.5] * 3 + [0.64] * 3, "rule": ["lossdiff-irm", "lossdiff", "irm"] * 2,
                       "overlap": [0.8, 0.7, 0.6, 0.6, 0.7, 0.5], "n_kept": 0, "chance": [0.5] * 3 + [0.64] * 3})
    assert "at 1 of 2 keep ratios (0.5)" in C.conclude_overlap(sw)
    # over seeds: a keep ratio counts only when the margin's t-interval over seeds lies above 0
    margins = {0.5: [0.10, 0.12, 0.11], 0.64: [0.30, -0.25, 0.05]}  # steady; positive mean, wide spread
    rows = [{"keep": k, "rule": r, "seed": i, "overlap": 0.6 + (m if r == "lossdiff-irm" else 0) - 0.1 * (r == "irm"),
             "n_kept": 0, "chance": k} for k, ms in margins.items() for i, m in enumerate(ms)
            for r in ("lossdiff-irm", "lossdiff", "irm")]
    text = C.conclude_overlap(pd.DataFrame(rows))
    assert text.startswith("Claim 5 reproduces only in part") and "at 1 of 2 keep ratios (0.5)" in text
    assert "keep 0.5 +0.110 [" in text and ", 3 of 3" in text and ", 2 of 3" in text
    curves = pd.DataFrame({"group": ["small"] * 2 + ["medium"] * 2 + ["large"] * 3, "step": [0, 4, 0, 4, 0, 2, 4],
                           "val_loss": [0.69, 0.70, 0.69, 0.60, 0.69, 0.62, 0.65],
                           "val_margin": [0.0, -0.1, 0.0, 0.3, 0.0, 0.2, 0.1]})
    two = pd.concat([curves.assign(seed=0), curves.assign(seed=1)], ignore_index=True)
    assert C.conclude_groups(two).startswith("Claim 2 reproduces.")
    assert C.conclude_groups(curves).startswith("On this one seed, claim 2 points the paper's way.")
    wins = pd.DataFrame({"name": ["small", "medium", "large"], "winrate": [0.4, 0.5, 0.6]})
    assert "Claim 2 reproduces in part" in C.conclude_groups(two, wins)
    # paired differences over seeds decide the WinRate checks: a higher mean inside its interval is not one
    wins = pd.DataFrame({"name": ["small", "medium", "large"], "winrate": [0.4, 0.7, 0.6]})
    loose = {"small": {"diff": 0.3, "lo": 0.1, "hi": 0.5, "n_better": 2, "n_seeds": 2},
             "large": {"diff": 0.1, "lo": -0.05, "hi": 0.25, "n_better": 1, "n_seeds": 2}}
    by_means, paired = C.conclude_groups(two, wins), C.conclude_groups(two, wins, differences=loose)
    assert by_means.startswith("Claim 2 reproduces.") and "Holds:" in by_means
    assert paired.startswith("Claim 2 reproduces in part") and "vs large +0.100 [-0.050, +0.250], 1 of 2" in paired
    assert "Does not hold: large-IF's model wins less often than medium's on the test prompts (interval above 0)" in paired
    tight = {**loose, "large": {"diff": 0.1, "lo": 0.02, "hi": 0.2, "n_better": 2, "n_seeds": 2}}
    assert C.conclude_groups(two, wins, differences=tight).startswith("Claim 2 reproduces.")


def test_benchmark_table():
    from tifkit.batch import summarize

    rows = []
    for seed in (0, 1):
        for rule, v in (("full", [1, 0, 0.5, 0]), ("lossdiff-irm", [1, 1, 0.5, 1]), ("annotation-gap", [0, 0, 0.5, 1])):
            rows.append(pd.DataFrame({"seed": seed, "rule": rule, "n_kept": 3, "prompt_idx": range(4),
                                      "prompt": "p", "reward_policy": 0.5, "reward_sft": 0.4, "verdict": v}))
    pp = pd.concat(rows, ignore_index=True)
    tab = R.benchmark_table({"llama": summarize(pp, n_bootstrap=200)})
    assert tab.loc["full", "paper UltraFeedback %"] == "77.61" and tab.loc["full", "llama vs full"] == ""
    assert tab.loc["lossdiff-irm", "llama WinRate %"].startswith("87.5 [")


def test_notebook_params_scales(tmp_path):
    p = N.notebook_params(str(ROOT / "params/tiny.yaml"), "ci")
    assert p.world.n_train == 96 and p.run.root == N.CI_ROOT and not p.run.show_progress
    full = N.notebook_params(str(ROOT / "params/tiny.yaml"), "full", ["train.objective=slic"])
    assert full.world.n_train == 2000 and full.run.root == "runs" and full.train.objective == "slic"
    # full scale: the notebooks' own studies run on run.study_seeds, a subset of the batch's run.seeds
    assert N.notebook_seeds(p, "ci") == [0] and N.notebook_seeds(full, "full") == list(full.run.study_seeds)
    assert set(full.run.study_seeds) < set(full.run.seeds) and len(full.run.study_seeds) >= 3
    assert N.notebook_seeds(full, "default") == [full.run.seed]
    unset = N.notebook_params(str(ROOT / "params/tiny.yaml"), "full", ["run.study_seeds=null"])
    assert N.notebook_seeds(unset, "full") == list(unset.run.seeds)  # no study seeds: every seed
    assert N.notebook_seeds(full, "full", 4) == [4]
    fams = N.family_params(str(ROOT / "params/tiny.yaml"), scale="ci", run_root=str(tmp_path))
    assert {k: v.model.family for k, v in fams.items()} == {f: f for f in N.TINY_FAMILIES}
    assert fams["llama"].run.name == "tiny" and fams["qwen"].run.name == "tiny-qwen"
    with pytest.raises(TifkitError):
        N.notebook_params(str(ROOT / "params/tiny.yaml"), "huge")


def test_train_on_groups_toy(toy):
    """Curves start at the warm-up model, end where the saved model is, and a rerun trains nothing."""
    from tifkit.pipeline import prepare, score_stage

    ctx = prepare(toy.params("score.influence=batched"), 0)  # the shared toy run's stages and scores
    table = pd.read_parquet(score_stage(ctx))
    groups = R.if_groups(table)
    run = E.train_on_groups(ctx, groups)
    c = run.curves
    assert set(c.group) == {"small", "medium", "large"}
    start = c[c.step == 0]
    assert len(start) == 3 and start.val_loss.nunique() == 1
    for name, d in run.model_dirs.items():
        last = c[c.group == name].sort_values("step").iloc[-1]
        assert last.step > 0
        m = E.validation_metrics(ctx, d)  # the saved model reproduces TRL's last logged evaluation
        assert m["val_loss"] == pytest.approx(last.val_loss, abs=1e-5)
        assert m["val_margin"] == pytest.approx(last.val_margin, abs=1e-5)
    stamp = (run.model_dirs["small"] / "history.parquet").stat().st_mtime_ns
    again = E.train_on_groups(ctx, groups)
    assert (run.model_dirs["small"] / "history.parquet").stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again.curves, c)


# ---------------------------------------------------------------- notebooks 04 and 05 (experiments)
def _per_prompt(rules_values, seeds=(0, 1), n=40, seed=0):
    """Synthetic per-prompt rows: verdicts and rewards drawn around each rule's level."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in seeds:
        for rule, level in rules_values.items():
            v = rng.choice([0.0, 0.5, 1.0], size=n, p=[(1 - level) * 0.8, 0.2, level * 0.8 + 1e-12][:3] / np.sum(
                [(1 - level) * 0.8, 0.2, level * 0.8 + 1e-12]))
            rows.append(pd.DataFrame({"seed": s, "rule": rule, "n_kept": 10, "prompt_idx": np.arange(n), "prompt": "p",
                                      "reward_policy": rng.random(n) * level, "reward_sft": 0.5, "verdict": v}))
    return pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=seed)  # order must not matter


def test_paired_rule_difference_against_a_loop():
    pp = _per_prompt({"full": 0.5, "lossdiff-irm": 0.7}, seeds=(0, 1, 2))
    d = E.paired_rule_difference(pp, "lossdiff-irm", "full", n_bootstrap=2000)
    per_seed = []  # each seed weighs the same: mean over seeds of the per-seed mean paired difference
    for s in (0, 1, 2):
        a = pp[(pp.rule == "lossdiff-irm") & (pp.seed == s)].set_index("prompt_idx").verdict
        b = pp[(pp.rule == "full") & (pp.seed == s)].set_index("prompt_idx").verdict
        per_seed.append(float((a - b.loc[a.index]).mean()))
    assert d["diff"] == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert d["lo"] < d["diff"] < d["hi"] and d["n_seeds"] == 3 and d["n_better"] == sum(x > 0 for x in per_seed)
    r = E.paired_rule_difference(pp, "lossdiff-irm", "full", "reward_policy", n_bootstrap=500)
    assert r["mean_a"] == pytest.approx(pp[pp.rule == "lossdiff-irm"].reward_policy.mean())
    with pytest.raises(TifkitError, match="different prompts"):
        E.paired_rule_difference(pp[~((pp.rule == "full") & (pp.prompt_idx == 3))], "lossdiff-irm", "full")
    with pytest.raises(TifkitError, match="must both be"):
        E.paired_rule_difference(pp, "tif", "full")


def test_benchmark_summary_single_score():
    pp = pd.concat([_per_prompt({"full": 0.5, "random": 0.5, "lossdiff-irm": 0.8}, seeds=(0,)).assign(variant="llama/dpo"),
                    _per_prompt({"full": 0.6, "random": 0.5, "lossdiff-irm": 0.4}, seeds=(0,), seed=1).assign(
                        variant="llama/slic")], ignore_index=True)
    s = E.benchmark_summary(pp, n_bootstrap=1000)
    assert list(s.columns[:2]) == ["variant", "rule"] and len(s) == 6
    for (v, rule), row in s.set_index(["variant", "rule"]).iterrows():
        g = pp[(pp.variant == v) & (pp.rule == rule)]
        assert row.single_score == pytest.approx(g.reward_policy.mean())
        assert row.winrate_vs_sft == pytest.approx(g.verdict.mean())
        # one seed: the interval is a bootstrap over prompts, close to mean +- 1.96 standard errors
        se = g.reward_policy.std(ddof=1) / np.sqrt(len(g))
        assert row.single_score_lo == pytest.approx(row.single_score - 1.96 * se, abs=0.6 * se)
        assert row.single_score_hi == pytest.approx(row.single_score + 1.96 * se, abs=0.6 * se)
        if rule == "full":
            assert np.isnan(row.single_diff_vs_full)
        else:
            f = pp[(pp.variant == v) & (pp.rule == "full")]
            assert row.single_diff_vs_full == pytest.approx(g.reward_policy.mean() - f.reward_policy.mean())


def test_transfer_plan_and_summary():
    from tifkit.select import select

    t = synthetic_table(n=50)
    rng = np.random.default_rng(3)
    tables = {"llama": t, "qwen": t.assign(lossdiff=rng.normal(size=len(t)), irm=rng.normal(size=len(t)))}
    plan = E.transfer_plan(tables, [("llama", "qwen")], "lossdiff-irm", 0.64)
    assert set(plan) == {("qwen", "full"), ("qwen", "lossdiff-irm-0.64"), ("qwen", "lossdiff-irm-0.64-from-llama")}
    assert len(plan["qwen", "full"]) == 50
    want = tuple(sorted(t.pair_id.astype(str)[select(t, rule="lossdiff-irm", keep=0.64).mask]))
    assert plan["qwen", "lossdiff-irm-0.64-from-llama"] == want and len(want) == 32
    assert plan["qwen", "lossdiff-irm-0.64"] != want  # qwen's own scores pick other pairs
    with pytest.raises(TifkitError, match="No score table"):
        E.transfer_plan(tables, [("pythia", "qwen")])
    with pytest.raises(TifkitError, match="same family"):
        E.transfer_plan(tables, [("qwen", "qwen")])
    src = {"full": "full", "own": "lossdiff-irm-0.64", "llama": "lossdiff-irm-0.64-from-llama"}
    pp = _per_prompt({v: lvl for v, lvl in zip(src.values(), (0.5, 0.7, 0.6))})
    pp = pp.assign(target="qwen", source=pp.rule.map({v: k for k, v in src.items()}))
    s = E.transfer_summary(pp, n_bootstrap=500).set_index("source")
    assert list(s.index) == list(dict.fromkeys(pp.source))
    for k, label in src.items():
        assert s.loc[k, "winrate"] == pytest.approx(pp[pp.rule == label].groupby("seed").verdict.mean().mean())
    d = E.paired_rule_difference(pp, src["llama"], src["own"], n_bootstrap=500)
    assert s.loc["llama", "vs_own"] == pytest.approx(100 * d["diff"])
    assert np.isnan(s.loc["own", "vs_own"]) and np.isfinite(s.loc["own", "vs_full"])


def test_init_control_params_use_model_seed():
    p = N.notebook_params(str(ROOT / "params/tiny.yaml"), "ci")
    ctl = E.init_control_params(p, 0, (100, 0, 101))
    assert list(ctl) == ["llama init 0", "llama init 100", "llama init 101"]  # the world seed itself is skipped
    assert ctl["llama init 0"] is p and ctl["llama init 100"].run.model_seed == 100
    assert ctl["llama init 101"].world == p.world and ctl["llama init 101"].run.seed == p.run.seed
    q = E.init_control_params(ctl["llama init 100"], 0, (100, 7))
    assert list(q) == ["llama init 100", "llama init 7"]


# ------------------------------------------------------------------ notebook 06: open decisions
def test_decision_settings_and_params():
    from tifkit.config import Params

    p = Params()
    s = E.decision_settings(p, {"beta": ("train.beta", (p.train.beta, 0.1)), "centre": ("select.band_center", (0.35,))})
    assert [x["setting"] for x in s] == ["default", "train.beta=0.1", "select.band_center=0.35"]  # own value skipped
    q = E.setting_params(p, "train.beta", 0.1)
    assert q.train.beta == 0.1 and p.train.beta == 0.3 and q.world == p.world
    with pytest.raises(TifkitError, match="unknown parameter"):
        E.decision_settings(p, {"x": ("train.betta", (1.0,))})
    with pytest.raises(TifkitError, match="twice"):
        E.decision_settings(p, {"a": ("train.beta", (1.0,)), "b": ("train.beta", (1.0,))})
    with pytest.raises(TifkitError, match="invalid"):
        E.setting_params(p, "world.flip_rate", 1.5)  # WorldConfig's own check


def test_decision_statistics_against_direct_computation():
    from scipy import stats as st

    from tifkit.config import SelectParams

    rng = np.random.default_rng(3)
    n = 300
    x = rng.normal(size=n)
    t = pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "if": x, "lossdiff": x + 0.5 * rng.normal(size=n),
                      "irm": rng.normal(size=n), "gt_flipped": x + rng.normal(size=n) < -1.0})
    s = E.decision_statistics(t, SelectParams(keep=0.6))
    assert s["pearson_lossdiff_if"] == pytest.approx(np.corrcoef(t.lossdiff, t["if"])[0, 1], abs=1e-12)
    assert s["spearman_irm_if"] == pytest.approx(st.spearmanr(t.irm, t["if"])[0], abs=1e-12)

    def band(v, keep=0.6):  # middle band by rank, independent of select.py
        r = np.argsort(np.argsort(v, kind="stable"), kind="stable")
        lo = int(round(0.5 * n - keep * n / 2))
        return (r >= lo) & (r < lo + int(round(keep * n)))

    tif, ld = band(t["if"].to_numpy()), band(t.lossdiff.to_numpy())
    assert s["overlap_lossdiff"] == pytest.approx((tif & ld).sum() / min(tif.sum(), ld.sum()))
    assert s["auroc_if"] == pytest.approx(auroc_by_pairs(t["if"], t.gt_flipped))
    assert s["flipped_share"] == pytest.approx(t.gt_flipped.mean())
    c = E.claim_statistics(s)
    assert c["c4_order"] == pytest.approx(s["pearson_lossdiff_if"] - s["pearson_irm_if"])
    assert c["c5_fusion"] == pytest.approx(s["overlap_lossdiff-irm"] - max(s["overlap_lossdiff"], s["overlap_irm"]))


def test_t_interval_matches_scipy():
    from scipy import stats as st

    v = [0.2, 0.35, 0.1]
    m, lo, hi = E.t_interval(v)
    ref = st.t.interval(0.95, 2, loc=np.mean(v), scale=st.sem(v))
    assert m == pytest.approx(np.mean(v)) and (lo, hi) == pytest.approx(ref)
    m1, lo1, hi1 = E.t_interval([0.4, np.nan])
    assert m1 == 0.4 and np.isnan(lo1) and np.isnan(hi1)


def _decision_stats(shift_beta=0.0, seeds=(0, 1, 2)):
    """Synthetic per-(setting, seed) statistics: LossDiff tracks IF except under val_start=sft;
    IRM's correlation sits near zero; beta moves the fusion margin by `shift_beta`."""
    rows = []
    for setting, decision in (("default", "default"), ("train.val_start=sft", "validation-model start"),
                              ("train.beta=1", "beta")):
        for s in seeds:
            e = 0.01 * (s - 1)
            rows.append({"setting": setting, "decision": decision, "seed": s,
                         "pearson_lossdiff_if": (0.2 if setting == "train.val_start=sft" else 0.8) + e,
                         "spearman_lossdiff_if": 0.7, "pearson_irm_if": 0.3 * e, "spearman_irm_if": 0.0,
                         "overlap_lossdiff-irm": 0.8 + (shift_beta if decision == "beta" else 0) + e,
                         "overlap_lossdiff": 0.85, "overlap_irm": 0.6,
                         "auroc_if": 0.6 + e, "auroc_lossdiff": 0.62, "auroc_irm": 0.7 + e, "flipped_share": 0.18})
    return pd.DataFrame(rows)


def test_decision_claims_ranking_and_robustness():
    stats = _decision_stats(shift_beta=0.2)  # beta turns the fusion margin from -0.05 to +0.15
    pp = pd.concat([_per_prompt({"full": 0.5, "lossdiff-irm-0.64": 0.8, "tif-0.64": 0.5}, seeds=(0, 1, 2), n=60)
                    .assign(setting="default")], ignore_index=True)
    claims = E.decision_claims(stats, pp, n_bootstrap=1000)
    get = lambda claim, setting: claims[(claims.claim == claim) & (claims.setting == setting)].iloc[0]  # noqa: E731
    row = get("c4_lossdiff", "default")
    assert row.estimate == pytest.approx(0.8) and row.lo < 0.8 < row.hi and row.n_seeds == 3
    assert row.verdict == "holds" and get("c4_irm", "default").verdict == "unclear"
    assert get("c5_fusion", "default").verdict == "fails" and get("c5_fusion", "train.beta=1").verdict == "holds"
    assert get("c4_order", "train.val_start=sft").estimate == pytest.approx(0.2)
    w = get("c6_winrate", "default")
    ref = E.paired_rule_difference(pp, "lossdiff-irm-0.64", "full", n_bootstrap=1000)
    assert w.estimate == pytest.approx(ref["diff"]) and w.verdict == "holds"
    assert set(claims.claim) == set(E.DECISION_CLAIMS)

    rank = E.rank_decisions(claims)
    assert rank.decision.tolist() == ["validation-model start", "beta"]  # 0.6 of LossDiff's r before 0.2
    assert rank.movement.iloc[0] == pytest.approx(0.6) and rank.moved_most.iloc[0] in ("c4_lossdiff", "c4_order")

    # a setting that gives the default's per-seed values exactly cannot move the statistic: it is
    # marked and left out of the robustness counts (the AUROC of IRM here: the same under every setting)
    assert not get("auroc_irm", "train.beta=1").moved and get("auroc_if", "default").moved
    assert get("c4_lossdiff", "train.val_start=sft").moved and not get("c4_lossdiff", "train.beta=1").moved
    rob = E.decision_robustness(claims).set_index("claim")
    assert rob.loc["auroc_irm", "status"] == "no setting tried can move it"
    assert rob.loc["auroc_irm", "cannot_move"] == "train.val_start=sft, train.beta=1"
    assert rob.loc["c5_fusion", "status"] == "hinges on beta" and rob.loc["c5_fusion", "holds_under"] == "train.beta=1"
    assert rob.loc["c4_lossdiff", "status"] == "robust"  # 0.2 still > 0 with a tight interval
    assert rob.loc["c4_lossdiff", "n_settings"] == 2 and rob.loc["c4_lossdiff", "cannot_move"] == "train.beta=1"
    assert rob.loc["c3_winrate", "status"] == "default only (not varied)"  # WinRate measured at the default only
    one = E.decision_claims(stats[stats.seed == 0])  # one seed: no interval, only a direction
    assert one.lo.isna().all() and set(one.verdict) <= {"above", "below"}
    assert "holds" not in set(E.decision_claims(stats[stats.seed == 0], pp[pp.seed == 0], n_bootstrap=200).verdict)


def test_decision_intervals_stay_inside_what_the_statistic_can_take():
    """A t-interval over three widely spread correlations reaches past -1 and +1 (t = 4.30 at two
    degrees of freedom); the claim table cuts it to the range, the estimate unchanged."""
    from scipy import stats as st

    stats = _decision_stats()
    wide = {0: -0.9, 1: 0.0, 2: 0.9}
    stats["pearson_irm_if"] = stats.seed.map(wide)
    row = E.decision_claims(stats).query("claim == 'c4_irm' and setting == 'default'").iloc[0]
    half = st.t.ppf(0.975, 2) * np.std(list(wide.values()), ddof=1) / np.sqrt(3)  # the uncut interval, by hand
    assert half > 1 and (row.lo, row.hi) == (-1.0, 1.0) and row.estimate == pytest.approx(0.0)
    assert row.verdict == "unclear"
    order = E.decision_claims(stats).query("claim == 'c4_order' and setting == 'default'").iloc[0]
    assert -2 <= order.lo < order.hi <= 2


def test_results_module_is_inside_the_source_hash(tmp_path):
    """results.py decides which rule pairs the committed *_comparisons.csv holds: a change to its code
    changes results.source_hash (a comment does not)."""
    import shutil

    from tifkit import results as RS

    pkg = tmp_path / "tifkit"
    shutil.copytree(RS.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__", "params"))
    assert pkg / "results.py" in RS.source_files(pkg)
    before = RS.source_hash(pkg)
    f = pkg / "results.py"
    f.write_text(f.read_text() + "\n# a comment only\n")
    assert RS.source_hash(pkg) == before
    f.write_text(f.read_text() + "\nCLAIMS = CLAIMS[:-1]\n")
    assert RS.source_hash(pkg) != before


def test_a_results_source_hash_covers_the_modules_its_run_imports(tmp_path):
    """The batch's manifest hashes tifkit.batch and every tifkit module it imports (read from the code,
    imports inside functions and tifkit.rules' import of tifkit.select by name included): every module
    that importing tifkit.batch loads is among them (a second, independent path: the interpreter);
    editing the notebooks' layer leaves the batch's hash as it was, editing tifkit.select changes it,
    and check_provenance judges each manifest by its own roots."""
    import json
    import shutil
    import subprocess
    import sys

    from tifkit import results as RS

    pkg = tmp_path / "tifkit"
    shutil.copytree(RS.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__", "params"))
    files = {p.relative_to(pkg).as_posix() for p in RS.source_files(pkg, roots=["tifkit.batch"])}
    # reward.py: imported only inside a function of pipeline.py; select.py: only by name, in tifkit.rules
    assert {"batch.py", "pipeline.py", "results.py", "select.py", "train.py", "reward.py", "__init__.py"} <= files
    assert not {"notebooks.py", "cli.py", "conclusions.py"} & files
    assert not [f for f in files if f.startswith("experiments/")]
    code = ("import json, sys, tifkit.batch, tifkit.rules; tifkit.rules.all_rules(); "
            "print(json.dumps(sorted(m for m in sys.modules if m == 'tifkit' or m.startswith('tifkit.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=RS.REPO)
    loaded = set()
    for m in json.loads(out.stdout.strip().splitlines()[-1]):
        rel = m.split(".", 1)[1].replace(".", "/") if "." in m else ""
        loaded.add(f"{rel}.py" if rel and (pkg / f"{rel}.py").exists() else f"{rel}/__init__.py".lstrip("/"))
    assert loaded <= files, sorted(loaded - files)

    batch0, all0 = RS.source_hash(pkg, roots=["tifkit.batch"]), RS.source_hash(pkg)
    # a module that does not parse (saved half-way) counts as importing every module: never current
    ev = pkg / "evaluate.py"
    good = ev.read_text()
    ev.write_text(good + "\ndef broken(:\n")
    assert RS.source_files(pkg, roots=["tifkit.batch"]) == RS.source_files(pkg)
    ev.write_text(good)
    assert RS.source_hash(pkg, roots=["tifkit.batch"]) == batch0
    nb = pkg / "notebooks.py"
    nb.write_text(nb.read_text() + "\nEXTRA = 1\n")
    assert RS.source_hash(pkg, roots=["tifkit.batch"]) == batch0 and RS.source_hash(pkg) != all0
    sel = pkg / "select.py"
    sel.write_text(sel.read_text() + "\nEXTRA = 1\n")
    assert RS.source_hash(pkg, roots=["tifkit.batch"]) != batch0

    # check_provenance: each manifest by its own roots (none recorded, as in older ones: every source file)
    figs = tmp_path / "figures"
    figs.mkdir()
    rec = {"source_hash": RS.source_hash(roots=["tifkit.batch"]), "source_roots": ["tifkit.batch"], "files": {}}
    (figs / "a_provenance.json").write_text(json.dumps(rec))
    assert RS.check_provenance(figs) == []
    (figs / "a_provenance.json").write_text(json.dumps({**rec, "source_roots": None}))
    assert any("the code is now" in x for x in RS.check_provenance(figs))


def test_batch_difference_reads_a_committed_pair_and_both_winrates(tmp_path):
    """What notebooks 01 and 04 print beside their verdicts: one row of `<name>_comparisons.csv`, the two
    rules' WinRates from `<name>_summary.csv`; None without the files; a pair the file lacks is one sentence."""
    from tifkit import TifkitError
    from tifkit import results as RS

    pd.DataFrame({"a": ["tif", "full"], "b": ["top-if", "oracle"], "diff": [0.05, -0.1], "lo": [0.01, -0.2],
                  "hi": [0.09, -0.02], "better": [7, 1], "n_seeds": [9, 9]}).to_csv(tmp_path / "w_comparisons.csv")
    pd.DataFrame({"rule": ["full", "oracle", "tif", "top-if"], "winrate_vs_sft": [0.6, 0.7, 0.65, 0.6]}).to_csv(
        tmp_path / "w_summary.csv")
    d = RS.batch_difference("tif", "top-if", "w", tmp_path)
    assert (d["diff"], d["lo"], d["hi"], d["n_better"], d["n_seeds"]) == (0.05, 0.01, 0.09, 7, 9)
    assert (d["mean_a"], d["mean_b"], d["file"]) == (0.65, 0.6, "w_comparisons.csv")
    assert RS.batch_difference("tif", "top-if", "other", tmp_path) is None
    with pytest.raises(TifkitError, match="no comparison top-if - tif"):
        RS.batch_difference("top-if", "tif", "w", tmp_path)
