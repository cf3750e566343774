"""The rule registry (tifkit.rules): names and aliases, what each layer reads from it, colours, and a
new rule registered in this file alone running through `tifkit select`, the batch tables and a figure."""
import colorsys
import json
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tifkit import TifkitError, rules
from tifkit.config import load_params

ROOT = Path(__file__).resolve().parents[1]


def table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"pair_id": [f"p{i}" for i in range(n)], "if": rng.normal(size=n),
                         "lossdiff": rng.normal(size=n), "irm": rng.normal(size=n), "rm_margin": rng.normal(size=n),
                         "score_chosen": rng.normal(size=n), "score_rejected": rng.normal(size=n),
                         "chosen_tokens": rng.integers(1, 30, size=n), "gt_flipped": rng.random(n) < 0.2})


# ------------------------------------------------------------------------------------------ names
def test_builtins_aliases_and_unknown_names():
    names = rules.rule_names()
    assert names[:3] == ("full", "oracle", "random") and "lossdiff-irm" in names
    assert "oracle" not in rules.rule_names(ground_truth=False)
    for spelling in ("LossDiff-IRM", "lossdiff-irm", "LOSSDIFF-IRM", " LossDiff-IRM "):
        assert rules.canonical(spelling) == "lossdiff-irm"
    assert rules.canonical("TIF") == "tif" and rules.canonical("top-IF") == "top-if"
    with pytest.raises(TifkitError, match="Unknown selection rule 'lossdif'; use one of full, oracle"):
        rules.get_rule("lossdif")
    assert rules.stage_label("full", 0.64) == "full" and rules.stage_label("oracle", 0.5) == "oracle"
    assert rules.stage_label("LossDiff-IRM", 0.64) == "lossdiff-irm-0.64"
    assert rules.overlap_rules()[0] == "lossdiff-irm" and "tif" not in rules.overlap_rules()


def test_register_rejects_taken_names_and_bad_names():
    with pytest.raises(TifkitError, match="already registered"):
        rules.register_rule("tif", lambda t, p, k: np.ones(len(t), bool))
    with pytest.raises(TifkitError, match="already names rule 'lossdiff-irm'"):
        rules.register_rule("fused", lambda t, p, k: np.ones(len(t), bool), aliases=("lossdiff-IRM",))
    with pytest.raises(TifkitError, match="lower-case letters"):
        rules.register_rule("Fused", lambda t, p, k: np.ones(len(t), bool))
    # replace=True redefines a rule in place (how tifkit.select registers the built-ins, so that a
    # module reload works): same position, new fields
    spec = rules.get_rule("irm")
    before = rules.rule_names()
    try:
        rules.register_rule("irm", spec.select, label="IRM (redefined)", colour=spec.colour, needs=spec.needs,
                            aliases=spec.aliases, overlap_rank=spec.overlap_rank, headline=spec.headline, replace=True)
        assert rules.rule_names() == before and rules.label("IRM") == "IRM (redefined)"
    finally:
        rules.register_rule("irm", spec.select, label=spec.label, colour=spec.colour, needs=spec.needs,
                            aliases=spec.aliases, overlap_rank=spec.overlap_rank, description=spec.description,
                            headline=spec.headline, replace=True)
    assert rules.get_rule("irm") == spec
    assert rules.find_rule("fused") is None and rules.find_rule("Fused") is None


def test_config_accepts_the_papers_spelling_and_names_a_bad_rule(tmp_path):
    p = load_params(ROOT / "params/tiny.yaml", ["select.rule=LossDiff-IRM", "run.rules=[Full, TIF, LossDiff-IRM]"])
    assert p.select.rule == "lossdiff-irm" and p.run.rules == ["full", "tif", "lossdiff-irm"]
    # the canonical name keeps the parameters' hash: same dict as when written in lower case
    q = load_params(ROOT / "params/tiny.yaml", ["select.rule=lossdiff-irm", "run.rules=[full, tif, lossdiff-irm]"])
    assert p.to_dict() == q.to_dict()
    with pytest.raises(TifkitError, match=r"--set run.rules=\[full, lossdif\]: 'run.rules\[1\]' must be one of "):
        load_params(ROOT / "params/tiny.yaml", ["run.rules=[full, lossdif]"])
    with pytest.raises(TifkitError, match="'select.rule' must be one of 'full', 'oracle'"):
        load_params(ROOT / "params/tiny.yaml", ["select.rule=nope"])


def test_select_by_alias_is_the_same_selection():
    from tifkit.select import select

    t = table()
    a, b = select(t, rule="LossDiff-IRM", keep=0.5), select(t, rule="lossdiff-irm", keep=0.5)
    assert a.rule == "lossdiff-irm" and (a.mask == b.mask).all() and a.n_kept == 20


def test_evaluate_error_lists_each_rule_once(capsys):
    from tifkit.cli import main

    assert main(["evaluate", str(ROOT / "params/tiny.yaml"), "--rule", "nope"]) == 2
    err = capsys.readouterr().err
    listed = err.split("use one of ", 1)[1].rstrip(".\n").split(", ")
    assert len(listed) == len(set(listed)) and {"full", "oracle", "sft", "lossdiff-irm"} <= set(listed)


def test_selection_mask_reads_the_registry():
    """full and random select on the pair table (no score stage), oracle on its ground truth."""
    from tifkit.config import Params
    from tifkit.pipeline import selection_mask
    from tifkit.select import select

    t = table(50)
    ctx = types.SimpleNamespace(train=t[["pair_id", "gt_flipped"]], p=Params())
    assert selection_mask(ctx, "full").all()
    assert (selection_mask(ctx, "oracle") == ~t.gt_flipped.to_numpy()).all()
    assert (selection_mask(ctx, "random", 0.4) == select(t, rule="random", keep=0.4).mask).all()
    assert (selection_mask(ctx, "LossDiff-IRM", table=t) == select(t, rule="lossdiff-irm").mask).all()
    ctx.train = t[["pair_id"]]
    with pytest.raises(TifkitError, match="'oracle' rule needs the world's ground truth"):
        selection_mask(ctx, "oracle")


# ----------------------------------------------------------------------------------------- colours
def _hue(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return 360 * colorsys.rgb_to_hsv(r, g, b)[0]


def test_colours_one_per_rule_and_distinct_hues_where_issue_13_asked():
    from tifkit import plots

    colours = {r.name: r.colour for r in rules.all_rules()}
    assert len(set(colours.values())) == len(colours)  # no two rules share a colour
    assert plots.color("sft") == plots.OTHER_COLOURS["sft"] and plots.color("irm") == colours["irm"]
    gap = abs(_hue(colours["irm"]) - _hue(colours["annotation-gap"]))
    assert min(gap, 360 - gap) > 60  # not two browns
    assert plots.color("irm") != plots.color("lossdiff-irm")  # 02_roc draws IRM in its own colour
    assert '"irm": plots.color("lossdiff-irm")' not in (ROOT / "notebooks/02_sf_correlation.py").read_text()


# --------------------------------------------------------------------------------- a new rule
def _shortest(tab, params, k):
    """Keep the k pairs with the shortest chosen answer (ties by row order)."""
    from tifkit.select import score_column, top_k

    return top_k(-score_column(tab, "chosen_tokens", "shortest"), k)


@pytest.fixture
def shortest():
    spec = rules.register_rule("shortest", _shortest, label="shortest chosen answer", colour="#17becf",
                               needs=("chosen_tokens",), aliases=("Shortest-Chosen",), overlap_rank=99)
    yield spec
    rules.unregister_rule("shortest")
    assert rules.find_rule("shortest") is None


def test_a_new_rule_runs_through_select_config_and_the_report(shortest):
    from tifkit.config import SelectParams
    from tifkit.report import score_report
    from tifkit.select import select

    t = table()
    res = select(t, SelectParams(rule="Shortest-Chosen", keep=0.25))
    # independently: the 10 smallest chosen_tokens, ties broken by row order
    want = sorted(range(len(t)), key=lambda i: (t.chosen_tokens[i], i))[:10]
    assert res.rule == "shortest" and sorted(np.flatnonzero(res.mask)) == sorted(want)
    with pytest.raises(TifkitError, match="Rule 'shortest' needs column 'chosen_tokens'"):
        select(t.drop(columns="chosen_tokens"), rule="shortest")
    p = load_params(ROOT / "params/tiny.yaml", ["run.rules=[full, shortest-chosen]"])
    assert p.run.rules == ["full", "shortest"]
    rep = score_report(t, 0.25)
    assert "shortest" in set(rep[rep.section == "overlap"].name)
    assert "shortest" not in set(score_report(t.drop(columns="chosen_tokens"), 0.25).name)


def test_a_new_rule_runs_through_tifkit_select(shortest, tmp_path, monkeypatch, capsys):
    import tifkit.pipeline as pipeline
    from tifkit.cli import main

    t = table(50)  # keep 0.2 of 50 = 10 pairs: above the CLI's minimum selection (cli.MIN_KEPT)
    pairs = pd.DataFrame({"pair_id": t.pair_id, "prompt": [f"q{i}" for i in range(50)],
                          "chosen": ["a" * n for n in t.chosen_tokens], "rejected": ["b"] * 50})
    scores = tmp_path / "scores.parquet"
    t.drop(columns="gt_flipped").to_parquet(scores)
    # the stages that would train models are replaced by the table above: the CLI's own code runs
    monkeypatch.setattr(pipeline, "prepare", lambda p, seed: types.SimpleNamespace(train=pairs, data_note=None))
    monkeypatch.setattr(pipeline, "score_stage", lambda ctx: scores)
    out = tmp_path / "kept.jsonl"
    assert main(["select", str(ROOT / "params/tiny.yaml"), "--rule", "Shortest-Chosen", "--keep", "0.2",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rule shortest: kept 10 of 50 pairs" in text
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    want = sorted(range(50), key=lambda i: (t.chosen_tokens[i], i))[:10]
    assert sorted(r["pair_id"] for r in kept) == sorted(t.pair_id[want])
    # the column the registry says the rule reads is written beside each kept pair
    assert [r["chosen_tokens"] for r in kept] == [int(t.chosen_tokens[t.pair_id == r["pair_id"]].iloc[0]) for r in kept]
    # without --rule: the params file's select.rule (here set on the command line)
    again = tmp_path / "again.jsonl"
    assert main(["select", str(ROOT / "params/tiny.yaml"), "--set", "select.rule=shortest", "--keep", "0.2",
                 "-o", str(again)]) == 0
    assert "rule shortest: kept 10 of 50 pairs" in capsys.readouterr().out
    assert again.read_text() == out.read_text()
    # and the other rules' report lists it beside them when another rule is selected (here by the
    # paper's spelling of LossDiff-IRM)
    assert main(["select", str(ROOT / "params/tiny.yaml"), "--rule", "LossDiff-IRM", "--keep", "0.2",
                 "-o", str(tmp_path / "fused.jsonl")]) == 0
    text = capsys.readouterr().out
    assert "rule lossdiff-irm: kept 10 of 50 pairs" in text and "overlap with shortest" in text


def test_a_new_rule_in_the_batch_tables_and_a_figure(shortest, tmp_path):
    from tifkit import plots
    from tifkit.batch import needs_scores, summarize
    from tifkit.results import rules_table

    assert needs_scores("shortest") and not needs_scores("random") and not needs_scores("oracle")
    rng = np.random.default_rng(3)
    per_prompt = pd.concat([pd.DataFrame({
        "seed": s, "rule": r, "n_kept": 10, "prompt_idx": np.arange(8), "prompt": [f"q{i}" for i in range(8)],
        "reward_policy": rng.random(8), "reward_sft": 0.5, "verdict": rng.choice([0.0, 0.5, 1.0], 8),
        "len_policy": 3, "len_sft": 3}) for s in (0, 1) for r in ("full", "random", "shortest")], ignore_index=True)
    summary = summarize(per_prompt, n_bootstrap=200)
    assert list(summary.rule) == ["full", "random", "shortest"]
    md = rules_table(summary, keep=0.64)
    assert "| shortest chosen answer |" in md and "| full data |" in md
    fig = plots.winrate_bars(summary)
    bars = {tuple(round(c, 3) for c in patch.get_facecolor()[:3]) for patch in fig.axes[0].patches}
    want = tuple(round(int(shortest.colour[i:i + 2], 16) / 255, 3) for i in (1, 3, 5))
    assert want in bars
    plots.save(fig, tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 0


def test_a_new_rule_reaches_the_experiments(shortest, monkeypatch):
    """The experiments read the registry when they run: a rule registered after import is in the
    benchmark's rules, trains in the batch's cache folder (its stage label) and reads the score table
    only when the registry says it needs scores (the stages that would train are replaced here)."""
    from tifkit import batch
    from tifkit import experiments as E
    from tifkit.experiments import subsets

    everything = rules.register_rule("everything", lambda tab, params, k: np.ones(len(tab), dtype=bool),
                                     label="every pair", uses_budget=False)
    try:
        assert "shortest" in E.bench_rules() and "everything" in E.bench_rules()
        assert "everything" in batch.NO_SCORES and "shortest" not in batch.NO_SCORES  # read when asked
        t = table(50)
        ctx = types.SimpleNamespace(train=t, p=load_params(ROOT / "params/tiny.yaml"))
        seen = {}
        monkeypatch.setattr(subsets, "prepare", lambda p, seed: ctx)
        monkeypatch.setattr(subsets, "score_stage", lambda c: seen.setdefault("scored", []).append(1) or "scores")
        monkeypatch.setattr(subsets.pd, "read_parquet", lambda path: t)
        monkeypatch.setattr(subsets, "continue_stage", lambda c, label, mask: seen.setdefault(label, int(mask.sum())))
        for name, keep in (("shortest", 0.2), ("everything", 0.2)):
            out = subsets._subset_task(ctx.p, 0, name, ("rule", name, keep), evaluate=False)
            assert out["summary"].n.iloc[0] == {"shortest": 10, "everything": 50}[name]
        assert seen["shortest-0.2"] == 10 and seen["everything"] == 50  # the labels of rules.stage_label
        assert len(seen["scored"]) == 1  # only the rule that reads score columns loaded the table
    finally:
        rules.unregister_rule("everything")
