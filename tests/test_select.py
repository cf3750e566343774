"""Selection rules: counts, bands, LossDiff-IRM search against a plain loop, overlap, errors, no gt_ reads."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tifkit import TifkitError
from tifkit.rules import rule_names
from tifkit.select import (
    SelectParams,
    correlations,
    lossdiff_irm_mask,
    overlap_coefficient,
    overlap_matrix,
    report,
    select,
)


def make_table(n, kind="normal", seed=0):
    """A score table; kind 'ties' draws few distinct values, 'const' one value, 'dup' duplicated rows."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        draw = lambda: rng.normal(size=n)  # noqa: E731
    elif kind == "ties":
        draw = lambda: rng.integers(0, 3, size=n).astype(float)  # noqa: E731
    elif kind == "const":
        draw = lambda: np.ones(n)  # noqa: E731
    else:  # dup: each value appears twice
        draw = lambda: np.repeat(rng.normal(size=(n + 1) // 2), 2)[:n]  # noqa: E731
    base = draw()
    return pd.DataFrame(
        {
            "pair_id": [f"p{i}" for i in range(n)],
            "if": base,
            "lossdiff": base + 0.5 * draw(),
            "irm": base + draw(),
            "rm_margin": draw(),
            "score_chosen": draw(),
            "score_rejected": draw(),
        }
    )


@pytest.mark.parametrize("kind", ["normal", "ties", "const", "dup"])
@pytest.mark.parametrize("n", [1, 2, 7, 10, 33, 100])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.64, 1.0])
def test_every_rule_keeps_the_requested_count(kind, n, keep):
    table = make_table(n, kind, seed=n)
    for rule in rule_names(ground_truth=False):
        res = select(table, SelectParams(rule=rule, keep=keep))
        target = n if rule == "full" else round(keep * n)
        assert res.mask.dtype == bool and res.mask.shape == (n,)
        assert res.n_kept == target, (rule, res.n_kept, target)  # exact by construction (issue asks within one)
        assert res.n_kept == res.mask.sum()


def test_default_tif_band_is_centred_with_width_keep():
    table = make_table(100)
    res = select(table, rule="tif", keep=0.64)
    b = res.bands["if"]
    assert (b["lo"], b["hi"]) == pytest.approx(((1 - 0.64) / 2, 1 - (1 - 0.64) / 2))
    kept = table["if"][res.mask]
    assert kept.min() == b["lo_value"] and kept.max() == b["hi_value"]
    # exactly the 18 smallest and 18 largest IF are dropped
    order = np.argsort(table["if"].to_numpy(), kind="stable")
    assert set(np.flatnonzero(res.mask)) == set(order[18:82])


def test_tif_explicit_edges_and_shifted_centre():
    table = make_table(100)
    res = select(table, rule="tif", tif_lo=0.2, tif_hi=0.9)
    assert res.n_kept == 70 and res.keep == pytest.approx(0.7)
    assert select(table, rule="tif", tif_lo=0.3, keep=0.5).bands["if"]["hi"] == pytest.approx(0.8)
    high = select(table, rule="tif", keep=0.5, band_center=0.9)  # shifted inside [0, 1]
    assert high.n_kept == 50 and high.bands["if"]["hi"] == 1.0
    assert set(np.flatnonzero(high.mask)) == set(np.argsort(table["if"].to_numpy())[50:])


def test_directions_top_rules_and_ties_are_deterministic():
    table = pd.DataFrame({"if": [3.0, 1.0, 3.0, 2.0, 3.0], "rm_margin": [0.0, 5, 5, 1, 1]})
    table["score_chosen"], table["score_rejected"] = [5, 4, 3, 2, 1], [0, 0, 0, 0, 0]
    pick = lambda **kw: list(np.flatnonzero(select(table, **kw).mask))  # noqa: E731
    assert pick(rule="top-if", keep=0.4) == [0, 2]  # tie at 3.0 broken by row order
    assert pick(rule="top-if", keep=0.4, top_if_largest=False) == [1, 3]
    assert pick(rule="top-if", keep=0.4, if_sign=-1) == [1, 3]
    assert pick(rule="rm-margin", keep=0.4) == [1, 2]
    assert pick(rule="annotation-gap", keep=0.4) == [0, 1]
    assert pick(rule="tif", keep=0.6) == [0, 2, 3]  # ordinal ranks: 1.0 < 2.0 < 3.0(r0) < 3.0(r2) < 3.0(r4)


def test_random_is_seeded():
    table = make_table(50)
    a, b, c = (select(table, rule="random", seed=s).mask for s in (1, 1, 2))
    assert (a == b).all() and not (a == c).all()


def brute_force_lossdiff_irm(ld, irm, k, center=0.5):
    """Plain-loop reference: widen both bands one position at a time until the intersection holds k."""
    n = len(ld)
    rank = lambda v: {i: r for r, i in enumerate(sorted(range(n), key=lambda i: (v[i], i)))}  # noqa: E731
    ra, rb = rank(ld), rank(irm)
    for m in range(n + 1):
        start = min(max(round(center * n - m / 2), 0), n - m)
        inter = [i for i in range(n) if start <= ra[i] < start + m and start <= rb[i] < start + m]
        if len(inter) >= k:
            break
    mid = center * n - 0.5
    dist = {i: max(abs(ra[i] - mid), abs(rb[i] - mid)) for i in inter}
    while len(inter) > k:  # drop the farthest from the centre; ties: the later row
        inter.remove(max(inter, key=lambda i: (dist[i], i)))
    return sorted(inter), m


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("kind", ["normal", "ties", "dup"])
def test_lossdiff_irm_matches_plain_loop(seed, kind):
    n = 9 + seed * 3
    t = make_table(n, kind, seed=seed)
    ld, irm = t["lossdiff"].to_numpy(), t["irm"].to_numpy()
    for keep in (0.3, 0.5, 0.64, 0.9):
        k = round(keep * n)
        for center in (0.5, 0.35):
            mask, info = lossdiff_irm_mask(ld, irm, k, center)
            expect, m = brute_force_lossdiff_irm(list(ld), list(irm), k, center)
            assert list(np.flatnonzero(mask)) == expect and info["m"] == m


@pytest.mark.parametrize("kind", ["normal", "ties", "const", "dup"])
def test_lossdiff_irm_rows_lie_in_both_bands(kind):
    t = make_table(200, kind, seed=3)
    res = select(t, rule="lossdiff-irm", keep=0.5)
    assert res.n_kept == 100
    kept = t[res.mask]
    for col in ("lossdiff", "irm"):
        b = res.bands[col]
        assert b["lo"] < b["hi"] and b["hi"] - b["lo"] == pytest.approx(res.details["width"])
        assert kept[col].between(b["lo_value"], b["hi_value"]).all()
        ranks = t[col].rank(method="first").to_numpy() - 1  # ordinal, ties by row order
        assert ((ranks[res.mask] >= b["lo"] * 200 - 1e-9) & (ranks[res.mask] < b["hi"] * 200)).all()
    assert res.bands["lossdiff"]["lo"] == res.bands["irm"]["lo"]  # the bands move together
    assert "lossdiff band" in report(res, {"tif": select(t, rule="tif")})


def test_gt_columns_are_never_read():
    clean = make_table(60, seed=5)
    dirty = clean.assign(gt_reward_chosen=np.nan, gt_flipped="garbage", gt_if=np.arange(60.0)[::-1])
    for rule in rule_names(ground_truth=False):
        assert (select(clean, rule=rule).mask == select(dirty, rule=rule).mask).all()
    with pytest.raises(TifkitError, match="ground-truth"):
        select(dirty, rule="tif", column="gt_if")


def test_overlap_and_correlations_against_hand_values():
    a = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    b = np.array([0, 1, 1, 1, 1, 0], dtype=bool)
    assert overlap_coefficient(a, b) == pytest.approx(2 / 3)
    assert overlap_coefficient(a, a) == 1.0
    assert np.isnan(overlap_coefficient(a, np.zeros(6, dtype=bool)))
    m = overlap_matrix({"a": a, "b": b})
    assert m.loc["a", "b"] == m.loc["b", "a"] == pytest.approx(2 / 3) and m.loc["a", "a"] == 1.0
    x, y = [1.0, 2, 3, 4], [1.0, 3, 2, 5]
    c = correlations(x, y)
    assert c["spearman"] == pytest.approx(0.8)  # rank diffs (0, 1, -1, 0): 1 - 6*2/(4*15)
    assert c["pearson"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=50), rng.normal(size=50)
    assert correlations(u, v)["spearman"] == pytest.approx(stats.spearmanr(u, v)[0])
    with pytest.raises(TifkitError):
        overlap_coefficient(a, b[:3])


def test_errors_name_the_culprit():
    t = make_table(20)
    with pytest.raises(TifkitError, match="'rm_margin'.*tifkit.reward.rm_margins"):
        select(t.drop(columns="rm_margin"), rule="rm-margin")
    with pytest.raises(TifkitError, match="'if'.*tifkit score"):
        select(t.drop(columns="if"), rule="tif")
    with pytest.raises(TifkitError, match="'score_rejected'"):
        select(t.drop(columns="score_rejected"), rule="annotation-gap")
    for keep in (0, -0.1, 1.5):
        with pytest.raises(TifkitError, match="keep"):
            select(t, rule="random", keep=keep)
    t.loc[[2, 5, 7], "irm"] = np.nan
    with pytest.raises(TifkitError, match="'irm' has 3 NaN"):
        select(t, rule="lossdiff-irm")
    with pytest.raises(TifkitError, match="Unknown selection rule"):
        select(t, rule="best")


def test_with_tif_is_the_one_place_the_tif_column_is_made():
    """select.with_tif puts `tif` right after `if` under the given select section; a stale `tif`
    column (a cache written with default parameters) is replaced in place, and the result equals
    writing tif_flags over it, as the pipeline did before the score caches stopped storing it."""
    from tifkit.select import tif_flags, with_tif

    t = make_table(40).drop(columns=["tif"], errors="ignore")
    params = SelectParams(keep=0.5, band_center=0.3)
    fresh = with_tif(t, params)
    cols = list(t.columns)
    assert list(fresh.columns) == cols[:cols.index("if") + 1] + ["tif"] + cols[cols.index("if") + 1:]
    assert fresh.tif.dtype == bool and (fresh.tif.to_numpy() == select(t, rule="tif", keep=0.5, band_center=0.3).mask).all()
    stale = with_tif(t, SelectParams())  # default-parameter column, as old core caches hold
    old_way = stale.copy()
    old_way["tif"] = tif_flags(stale, params)
    pd.testing.assert_frame_equal(with_tif(stale, params), old_way, check_exact=True)
    pd.testing.assert_frame_equal(with_tif(stale, params), fresh, check_exact=True)
    assert "tif" not in with_tif(t.drop(columns="if"), params).columns  # influence "none": no IF, no TIF
    assert "tif" not in t.columns  # the caller's table is left alone


def test_a_missing_annotation_score_names_the_columns_the_data_file_lacks():
    table = make_table(20).drop(columns=["score_chosen", "score_rejected"], errors="ignore")
    with pytest.raises(TifkitError) as e:
        select(table, SelectParams(rule="annotation-gap", keep=0.5))
    msg = str(e.value)
    assert "score_chosen" in msg and "score_rejected" in msg and "data file" in msg and "load_pairs" not in msg


def test_the_tif_key_holds_every_select_field_the_tif_column_reads():
    """tif_settings (what a cached score table's name carries) against what tif_flags reads: a field
    whose change moves the flags must be in it; one that cannot must not."""
    from dataclasses import fields, replace as dc_replace

    from tifkit.select import TIF_FIELDS, tif_flags, tif_settings

    rng = np.random.default_rng(3)
    table = make_table(60).assign(if2=rng.normal(size=60))
    base = SelectParams(keep=0.4, band_center=0.3)  # off-centre, so that the sign matters
    changed = {"keep": 0.6, "band_center": 0.5, "tif_lo": 0.2, "tif_hi": 0.8, "if_sign": -1, "column": "if2",
               "seed": 5, "lossdiff_sign": -1, "irm_sign": -1, "top_if_largest": False, "rule": "random"}
    assert set(changed) == {f.name for f in fields(SelectParams)}
    for name, value in changed.items():
        other = dc_replace(base, **{name: value})
        moves = not np.array_equal(tif_flags(table, base), tif_flags(table, other))
        assert moves == (name in TIF_FIELDS), name
        assert (tif_settings(other) != tif_settings(base)) == (name in TIF_FIELDS), name
    assert "column" not in tif_settings(base)  # unset: the names of tables made before it was keyed
