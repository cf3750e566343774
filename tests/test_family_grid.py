"""The family grid (tifkit.family_grid, `make families`): its entry point on the toy settings in the
test run's shared toy root (2 families x 2 objectives x 2 seeds x two of the headline rules), its
files with provenance, and the README table generated from them (tifkit.results.grid_table)."""
import json
import time

import numpy as np
import pandas as pd
import pytest

from tifkit import TifkitError, plots
from tifkit import family_grid as G
from tifkit import results as R
from tifkit.rules import get_rule, headline_rules, register_rule, unregister_rule

BLOCK = "intro\n<!-- results:family-grid:start -->\nold\n<!-- results:family-grid:end -->\nrest\n"


def test_headline_rules_come_from_the_registry():
    # the paper's main table: its methods (full data, random, top-IF, TIF, LossDiff, IRM, LossDiff-IRM) and the oracle control
    assert list(headline_rules()) == ["full", "oracle", "random", "top-if", "tif", "lossdiff", "irm", "lossdiff-irm"]
    assert not get_rule("rm-margin").headline and get_rule("lossdiff-irm").headline
    register_rule("always-first", lambda t, p, k: np.arange(len(t)) < k, headline=True)
    try:
        assert G.headline_rules()[-1] == "always-first"
    finally:
        unregister_rule("always-first")
    assert "always-first" not in G.headline_rules()


def test_grid_params_and_its_errors():
    v = G.grid_params(["llama", "gpt2"], ["dpo", "slic"], ["world.n_train=96"])
    assert list(v) == [("llama", "dpo"), ("llama", "slic"), ("gpt2", "dpo"), ("gpt2", "slic")]
    assert v["gpt2", "slic"].model.family == "gpt2" and v["gpt2", "slic"].train.objective == "slic"
    assert v["llama", "dpo"].run.seeds == v["gpt2", "dpo"].run.seeds  # the default batch's seeds
    with pytest.raises(TifkitError, match="family"):
        G.grid_params(["mistral"])
    with pytest.raises(TifkitError, match="objective"):
        G.grid_params(["llama"], ["ppo"])


def test_the_table_says_when_there_are_no_results(tmp_path):
    md = R.grid_table(tmp_path)
    assert md.startswith("No family-grid results yet") and "make families" in md
    new, changed = R.render(BLOCK, {"family-grid": md})
    assert changed == ["family-grid"] and md in new and new.endswith("rest\n")


@pytest.mark.slow
def test_grid_entry_point_writes_results_and_fills_the_readme(toy, tmp_path, capsys):
    fig = tmp_path / "repo" / "figures"
    # the toy settings in the shared toy root (llama/DPO seed 0 is the toy pipeline other tests train),
    # and two of the headline rules (the full list is `headline_rules()`, tested above; each rule is
    # one more continuation per variant and seed); one worker: in this process, no spawned interpreters
    # to start (the pool itself is tested with the batch in tests/test_batch.py)
    sets = toy.overrides("run.n_bootstrap=400")
    rules = ["full", "lossdiff-irm"]
    argv = ["--families", "llama", "qwen", "--seeds", "0", "1", "--figures", str(fig), "--rules", *rules,
            "--workers", "1"]
    argv += [a for s in sets for a in ("--set", s)]
    t0 = time.time()
    assert G.main(argv) == 0
    seconds = time.time() - t0
    printed = capsys.readouterr().out
    for fam in ("llama", "qwen"):
        for obj in ("dpo", "slic"):
            name = G.stem(fam, obj)
            rec = json.loads((fig / f"{name}_provenance.json").read_text())
            assert (rec["family"], rec["objective"], rec["seeds"], rec["rules"]) == (fam, obj, [0, 1], rules)
            assert rec["params"]["train"]["objective"] == obj and rec["params"]["model"]["family"] == fam
            assert set(rec["files"]) == {f"{name}_summary.csv", f"{name}_comparisons.csv"}
            assert len(rec["tasks"]) == 2 * len(rules) and rec["cpu_seconds_tasks"] > 0
            s = pd.read_csv(fig / f"{name}_summary.csv")
            assert list(s.rule) == rules and (s.n_seeds == 2).all()
            # the WinRate is the mean of per-seed means of the per-prompt verdicts (a slow path)
            pp = pd.read_parquet(toy.root / name / "per_prompt.parquet")
            slow = pp.groupby(["rule", "seed"]).verdict.mean().groupby("rule").mean()
            assert np.allclose(s.set_index("rule").winrate_vs_sft, slow.loc[s.rule].to_numpy(), atol=1e-4)
    assert R.check_provenance(fig) == []
    md = R.grid_table(fig)
    assert md in printed
    assert "**DPO**" in md and "**SLiC**" in md and "| rule | llama | qwen (Qwen3-style) |" in md
    s = pd.read_csv(fig / f"{G.stem('qwen', 'slic')}_summary.csv").set_index("rule")
    r = s.loc["lossdiff-irm"]
    assert R._wr(r.winrate_vs_sft, r.winrate_lo, r.winrate_hi) in md
    assert f"{int(r.diff_vs_full_better)} of 2; 80%: " in md
    for rule in rules:  # one row per rule in each objective's table
        assert md.count(f"| {R.rule_label(rule)} |") == 2
    # the long table notebook 04 reads: one row per (family, objective, rule), values from the CSVs
    long = R.grid_frame(fig)
    assert len(long) == 2 * 2 * len(rules) and set(long.family) == {"llama", "qwen"}
    assert list(long[(long.family == "qwen") & (long.objective == "slic")].rule) == rules
    got = long.set_index(["family", "objective", "rule"]).loc[("qwen", "slic", "lossdiff-irm")]
    assert got.winrate_vs_sft == r.winrate_vs_sft and got.diff_vs_full == r.diff_vs_full and not got.stale
    figure = plots.plot_family_grid(long)
    assert [a.get_title() for a in figure.axes] == ["llama (2 seeds)", "qwen (2 seeds)"]
    fewer = long.assign(n_seeds=np.where(long.objective == "slic", 1, long.n_seeds))  # SLiC behind DPO
    assert plots.plot_family_grid(fewer).axes[0].get_title() == "llama (DPO 2, SLiC 1 seeds)"
    assert len(figure.axes[1].lines) > 0  # the error bars were drawn
    assert R.grid_frame(tmp_path / "none").empty
    # the README generator fills the block from the repository's figures
    (tmp_path / "repo" / "README.md").write_text(BLOCK)
    assert R.update(tmp_path / "repo") == {"README.md": ["family-grid"]}
    assert md in (tmp_path / "repo" / "README.md").read_text()
    assert R.update(tmp_path / "repo", check=True) == {}
    # provenance covers the files: an edited number is caught
    p = fig / f"{G.stem('llama', 'dpo')}_comparisons.csv"
    p.write_text(p.read_text().replace("0.", "0.9", 1))
    assert any("differs from what the batch wrote" in x for x in R.check_provenance(fig))
    print(f"family grid, 2 families x 2 objectives x 2 seeds x {len(rules)} rules: {seconds:.0f} s")
