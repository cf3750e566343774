"""The batch: run.model_seed apart from the world seed, seeds in parallel worker processes (same numbers
as serially), and the provenance every result file carries."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_model_seed_changes_weights_not_world_and_world_seed_the_reverse(toy, tmp_path):
    from tifkit.pipeline import prepare, sft_stage

    def params(*extra):  # in a root of its own: these run folders must not mix with the shared ones
        return toy.params("sft.steps=0", *extra, root=tmp_path)

    # sft.steps=0: the SFT stage saves the freshly initialized model, so its weights are the initialization
    base = prepare(params(), 0)                           # world 0, model seed = world seed = 0
    other_init = prepare(params("run.model_seed=7"), 0)  # world 0, model seed 7
    other_world = prepare(params("run.model_seed=0"), 1)  # world 1, model seed 0
    assert base.train_seed == 0 and other_init.train_seed == 7 and other_world.train_seed == 0
    # model_seed: the same world (pairs, D_val, test prompts), other weights, its own run folder
    pd.testing.assert_frame_equal(base.train, other_init.train)
    pd.testing.assert_frame_equal(base.val, other_init.val)
    assert base.test_prompts == other_init.test_prompts
    w0, w7 = _weights(Path(sft_stage(base))), _weights(Path(sft_stage(other_init)))
    assert not _same(w0, w7)
    assert base.run_dir != other_init.run_dir and "-s0m7-" in other_init.run_dir.name
    # world seed with the model seed held: another world, the same initial weights
    assert not base.train.pair_id.equals(other_world.train.pair_id) or not base.train.chosen.equals(other_world.train.chosen)
    assert base.test_prompts != other_world.test_prompts
    assert _same(w0, _weights(Path(sft_stage(other_world))))
    # model_seed None keeps the run folder of before (cached runs keep their hash)
    from tifkit.io import content_hash
    from tifkit.world import WORLD_VERSION

    d = params().to_dict()
    old_key = content_hash({**{k: d[k] for k in ("world", "data", "model", "sft", "train")}, "seed": 0,
                            "world_version": WORLD_VERSION})
    assert base.run_dir.name == f"tiny-s0-{old_key}"


def _toy_batch(toy, root=None):
    return toy.params("run.rules=[full,lossdiff-irm]", "run.n_bootstrap=300", root=root)


def test_batch_in_parallel_workers_gives_the_serial_numbers_and_records_provenance(toy, tmp_path, capsys):
    """The batch in 2 spawned worker processes from an empty cache and the same tasks in this process
    (in the shared toy root, whose stages were all trained in this process) give exactly the same rows
    and score tables; every file it writes carries its provenance."""
    import json

    from PIL import Image

    from tifkit import results as R
    from tifkit.batch import run_batch, run_seeds

    par = _toy_batch(toy, tmp_path / "parallel")
    figs = tmp_path / "figures"
    figs.mkdir()
    summary = run_batch(par, seeds=[0, 1], figures_dir=figs, workers=2)
    assert "2 workers" in capsys.readouterr().out
    per_prompt = pd.read_parquet(tmp_path / "parallel" / "tiny-batch" / "per_prompt.parquet")
    serial, t_serial = run_seeds(_toy_batch(toy), [0, 1], par.run.rules, workers=1)
    assert list(serial.groupby(["seed", "rule"], sort=False).size().index) == [
        (s, r) for s in (0, 1) for r in ("full", "lossdiff-irm")]
    pd.testing.assert_frame_equal(serial, per_prompt)
    _, t_par = run_seeds(par, [0, 1], par.run.rules, workers=1)  # all cached now: just reads the tables
    for s in (0, 1):
        pd.testing.assert_frame_equal(t_serial[s], t_par[s])

    # the summary: intervals over seeds and prompts, per-seed differences, better in k of n
    row = summary.set_index("rule").loc["lossdiff-irm"]
    per_seed = json.loads(row.diff_vs_full_per_seed)
    assert set(per_seed) == {"0", "1"} and row.diff_vs_full_better == sum(v > 0 for v in per_seed.values())
    assert row.diff_vs_full == pytest.approx(np.mean(list(per_seed.values())), abs=1e-4)
    assert row.diff_vs_full_lo <= row.diff_vs_full <= row.diff_vs_full_hi

    # provenance: manifest with commit, source hash, parameters and the sha256 of every file written
    man = json.loads((figs / "tiny_provenance.json").read_text())
    assert man["source_roots"] == ["tifkit.batch"] and man["params"]["run"]["name"] == "tiny"
    assert man["source_hash"] == R.source_hash(roots=["tifkit.batch"])
    assert man["seeds"] == [0, 1] and man["workers"] == 2
    assert set(man["files"]) == {"tiny_summary.csv", "tiny_comparisons.csv", "tiny_score_diagnostics.csv",
                                 "tiny_winrates.png", "tiny_reward_distribution.png"}
    for name in ("tiny_summary.csv", "tiny_comparisons.csv", "tiny_score_diagnostics.csv"):
        # as text: a hash of digits with one 'e' (49708532e328, seen in a run) reads as a float otherwise
        df = pd.read_csv(figs / name, dtype={"commit": str, "source_hash": str, "params_hash": str})
        assert set(df.source_hash) == {man["source_hash"]} and set(df.params_hash) == {man["params_hash"]}
    with Image.open(figs / "tiny_winrates.png") as im:
        assert im.text["tifkit:source_hash"] == man["source_hash"]
    assert R.check_provenance(figs) == []
    # the checks fail when the code moves on, when a file is edited, and a note must name the culprit
    assert "rerun" in R.check_provenance(figs, current="0" * 16)[0]
    (figs / "STALE.md").write_text("- `tiny_provenance.json`: code moved after the run; rerun at the end\n")
    assert R.check_provenance(figs, current="0" * 16) == []
    assert "remove the note" in R.check_provenance(figs)[0]
    (figs / "STALE.md").unlink()
    (figs / "tiny_summary.csv").write_text((figs / "tiny_summary.csv").read_text().replace("lossdiff-irm", "lossdiff-1rm"))
    assert any("differs from what the batch wrote" in p for p in R.check_provenance(figs))

    # the README blocks regenerate from these files
    gen = R.blocks(figs, "tiny")
    assert {"tiny", "tiny-claims", "tiny-scores"} <= set(gen)
    assert "lossdiff-1rm" in gen["tiny"] and "better in" in gen["tiny-claims"]
    doc = "intro\n<!-- results:tiny:start -->\nold table\n<!-- results:tiny:end -->\nrest\n"
    new, changed = R.render(doc, gen)
    assert changed == ["tiny"] and new.startswith("intro\n<!-- results:tiny:start -->\n| rule |") and new.endswith("rest\n")
    assert R.render(new, gen) == (new, [])


def test_committed_results_match_the_code():
    """Every committed result file of a batch (figures/*_provenance.json) was made by the code as it is
    now, byte for byte as the batch wrote it; or figures/STALE.md says why not. A change that moves
    numbers therefore forces a rerun (`python -m tifkit batch params/tiny.yaml`, then
    `python -m tifkit.results`) or an explicit note."""
    from tifkit.results import check_provenance

    problems = check_provenance(ROOT / "figures")
    assert not problems, "\n".join(problems)


def test_readme_and_docs_tables_are_generated_from_the_result_files():
    from tifkit.results import update

    assert update(ROOT, check=True) == {}, "run `python -m tifkit.results` to regenerate the README/docs tables"


def test_scores_doc_if_measurement_block_is_generated_from_its_result_file():
    """docs/SCORES.md's "What IF measures" tables are what bench/if_measurements.py makes of its result file
    (whose manifest test_committed_results_match_the_code checks against the code), over the batch's seeds."""
    import importlib.util
    import json

    from tifkit.config import load_params
    from tifkit.io import content_hash

    spec = importlib.util.spec_from_file_location("if_measurements", ROOT / "bench" / "if_measurements.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    df = mod.read_csv()
    p = load_params("tiny.yaml")
    assert sorted(df.seed.unique()) == sorted(p.run.seeds)
    assert set(df.params_hash) == {content_hash(p.to_dict())}  # the default parameters, nothing overridden
    man = json.loads(mod.MANIFEST.read_text())
    assert man["bench_code_hash"] == mod.code_hash(), f"the script's computation changed: rerun `{mod.RERUN}`"
    assert set(df.measure) == set(mod.MEASURES)
    assert (df.groupby(["measure", "statistic"]).size() == df.seed.nunique()).all()  # every seed, every row
    (block,) = mod.BLOCK.findall((ROOT / "docs" / "SCORES.md").read_text())
    assert block == f"<!-- bench:if-measurements -->\n{mod.render(df)}\n<!-- /bench:if-measurements -->", (
        f"rerun `{mod.RERUN}`")


def test_compare_results_finds_a_changed_cell_and_ignores_provenance(tmp_path, monkeypatch, capsys):
    """bench/compare_results.py, the check a rerun of committed results is read with: equal tables
    (provenance columns aside) pass, one changed digit fails."""
    import importlib.util
    import subprocess

    spec = importlib.util.spec_from_file_location("compare_results", ROOT / "bench" / "compare_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "figures").mkdir()
    table = tmp_path / "figures" / "x_summary.csv"
    table.write_text("rule,winrate,commit,source_hash\nfull,0.7064,aaa,111\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-C", str(tmp_path)]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "results"]):
        subprocess.run(git + cmd, check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)
    table.write_text("rule,winrate,commit,source_hash\nfull,0.7064,bbb,222\n")  # a rerun: new provenance only
    assert mod.main(["x"]) == 0 and "equal to HEAD" in capsys.readouterr().out
    table.write_text("rule,winrate,commit,source_hash\nfull,0.7065,bbb,222\n")
    assert mod.main(["x"]) == 1 and "DIFFERS" in capsys.readouterr().out
