"""End to end at toy scale: the CLI smoke run, stage caching, one-line errors. The toy runs share the
test run's toy root (conftest.py), so SFT and the stages are trained once per test run."""
import json
from pathlib import Path

import pytest

from conftest import TOY_N_TEST, TOY_N_TRAIN
from tifkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "params/tiny.yaml")


def test_smoke_run_end_to_end_and_cached(toy, capsys):
    from tifkit.pipeline import prepare

    args = ["run", TINY, *toy.cli()]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "WinRate of DPO vs SFT" in out and f"oracle reward on {TOY_N_TEST} test prompts" in out
    run_dir = prepare(toy.params(), 0).run_dir
    assert run_dir.name.startswith("tiny-s0-") and f"run folder: {run_dir}" in out
    res = json.loads((run_dir / "smoke.json").read_text())
    assert 0 <= res["sft_reward"] <= 1 and 0 <= res["dpo_reward"] <= 1
    assert 0 <= res["winrate_lo"] <= res["winrate"] <= res["winrate_hi"] <= 1
    assert sum(res["counts"][k] for k in ("win", "tie", "loss")) == TOY_N_TEST
    assert (run_dir / "models" / "warmup" / "model.safetensors").exists()
    (full,) = (run_dir / "models").glob("full-*")  # keyed by the hash of the kept pair ids
    assert (full / "model.safetensors").exists()
    # one SFT folder for this family and seed in the shared cache (other seeds and families of the shared
    # root, as the family-grid test trains them, have their own)
    assert len([d for d in (toy.root / "cache" / "sft").iterdir() if d.name.startswith("llama-") and "-s0-" in d.name]) == 1
    # a second run reuses every stage and the cached generations: same numbers, nothing retrained
    stamp = (full / "stage.json").stat().st_mtime_ns
    assert main(args) == 0
    out2 = capsys.readouterr().out
    assert "DPO stage" not in out2 and "SFT llama" not in out2
    assert (full / "stage.json").stat().st_mtime_ns == stamp
    assert json.loads((run_dir / "smoke.json").read_text())["winrate"] == res["winrate"]


def test_slic_objective_trains_the_stages_with_the_hinge_loss(toy, capsys):
    """train.objective=slic reaches the pipeline's training: its own run folder (the objective is part
    of the run key), stages labelled SLIC, and a first logged loss of exactly 1 (the hinge at zero
    margin, where DPO's sigmoid loss gives log 2); the shared SFT model is reused."""
    import pandas as pd

    from tifkit.pipeline import prepare, sft_stage, warmup_stage

    dpo = prepare(toy.params("train.logging_steps=1"), 0)
    slic = prepare(toy.params("train.logging_steps=1", "train.objective=slic"), 0)
    assert slic.run_dir != dpo.run_dir and sft_stage(slic) == sft_stage(dpo)
    capsys.readouterr()
    out = warmup_stage(slic)
    assert f"SLIC stage 'warmup' from sft on {TOY_N_TRAIN} pairs" in capsys.readouterr().out
    log = pd.read_parquet(out / "train_log.parquet")
    assert log["loss"].dropna().iloc[0] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("extra, expect", [
    (["--set", "train.lr=fast"], "'train.lr' must be a number"),
    (["--set", "model.family=mamba"], "Unknown tiny model family 'mamba'"),
])
def test_cli_errors_are_one_line(toy, tmp_path, capsys, extra, expect):
    args = ["run", TINY, *toy.cli(root=tmp_path), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tifkit: error:") and expect in err and "\n" not in err


def test_cli_missing_params_file(capsys):
    assert main(["run", "params/nope.yaml"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_score_select_evaluate_commands(toy, tmp_path, capsys):
    import pandas as pd
    from datasets import load_dataset

    from tifkit.pipeline import prepare

    base = [TINY, *toy.cli()]
    assert main(["score", *base]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    table = pd.read_parquet(last)
    assert len(table) == TOY_N_TRAIN and {"irm", "lossdiff", "if", "tif", "rm_margin"} <= set(table.columns)
    # the `tif` column follows the run's select section (one definition with the tif rule), and a
    # changed band rescoring nothing but the flag
    from tifkit.select import SelectParams, select

    assert main(["score", *base, "--set", "select.keep=0.5", "--set", "select.band_center=0.3"]) == 0
    moved = pd.read_parquet(capsys.readouterr().out.strip().splitlines()[-1])
    assert moved["if"].equals(table["if"]) and moved.tif.sum() == TOY_N_TRAIN // 2
    assert (moved.tif.to_numpy() == select(moved, SelectParams(rule="tif", keep=0.5, band_center=0.3)).mask).all()
    assert not moved.tif.equals(table.tif)
    # the core score cache keeps no `tif` column: the select layer derives it once per select section
    (core,) = Path(last).parent.glob("core-*.parquet")  # beside the score table, in the shared toy root
    assert "tif" not in pd.read_parquet(core).columns and {"if", "lossdiff", "irm"} <= set(pd.read_parquet(core).columns)

    out = tmp_path / "kept.jsonl"
    assert main(["select", *base, "--rule", "lossdiff-irm", "--keep", "0.5", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "overlap" in text.lower() and text.strip().splitlines()[-1] == str(out)
    kept = load_dataset("json", data_files=str(out), split="train")
    assert len(kept) == TOY_N_TRAIN // 2 and {"prompt", "chosen", "rejected"} <= set(kept.column_names)
    assert set(kept["pair_id"]) <= set(table.pair_id)

    assert main(["evaluate", *base, "--rule", "random", "--set", "select.keep=0.5"]) == 0
    text = capsys.readouterr().out
    assert "random on world: WinRate vs SFT" in text
    run_dir = prepare(toy.params(), 0).run_dir
    assert len(list((run_dir / "models").glob("random-0.5-*"))) == 1
    # another selection (a different random seed) trains another model, and is evaluated as itself
    assert main(["evaluate", *base, "--rule", "random", "--set", "select.keep=0.5", "--set", "select.seed=1"]) == 0
    capsys.readouterr()
    assert len(list((run_dir / "models").glob("random-0.5-*"))) == 2
    keys = {p.stem for p in (run_dir / "eval" / "generations").glob("*.parquet")}
    assert len(keys) >= 3  # SFT + two different continuation models


@pytest.mark.parametrize("lora", [False, True], ids=["full-ft", "lora"])
def test_real_family_path_offline(tmp_path, capsys, lora):
    """A 'real' checkpoint by local path, pairs from a local JSONL file, a local prompt set: the
    route the GPU parameter files take, run end to end without a hub."""
    import json as _json

    import yaml

    from tifkit.data import save_pairs
    from tifkit.models import build_tiny_model
    from tifkit.tokenizer import build_char_tokenizer
    from tifkit.train import save_stage
    from tifkit.world import WorldConfig, build_world

    tok = build_char_tokenizer()
    ckpt = save_stage(build_tiny_model("qwen", tok, hidden_size=32), tok, tmp_path / "my-sft-model")
    w = build_world(WorldConfig(n_sft=10, n_train=60, n_val=10, n_test=12, n_rm=10), 0)
    save_pairs(w.train, tmp_path / "pairs.jsonl")
    (tmp_path / "prompts.jsonl").write_text("".join(_json.dumps({"prompt": p}) + "\n" for p in w.test.prompt))
    params = {
        "base": str(ROOT / "params/qwen3-0.6b.yaml"),
        "run": {"root": str(tmp_path / "runs"), "show_progress": False},
        "data": {"source": "jsonl", "path": str(tmp_path / "pairs.jsonl"), "val_size": 12, "max_tokens": 64},
        "model": {"name_or_path": str(ckpt), "dtype": "float32", "device": "cpu",
                  "lora": {"enabled": lora, "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
        "train": {"batch_size": 8, "grad_accum": 1, "lr": 1e-3, "max_length": 64, "precompute_ref_log_probs": lora},
        "eval": {"judge": "oracle", "prompt_sets": [str(tmp_path / "prompts.jsonl")], "max_new_tokens": 12},
    }
    f = tmp_path / "real.yaml"
    f.write_text(yaml.safe_dump(params))
    assert main(["run", str(f)]) == 0
    out = capsys.readouterr().out
    assert "prompts: WinRate of DPO vs SFT" in out and "on 12 prompts" in out
    (run_dir,) = (tmp_path / "runs").glob("qwen3-0.6b-*-s0-*")  # the name carries the local files' fingerprint
    res = _json.loads((run_dir / "smoke.json").read_text())
    assert res["sets"]["prompts"]["counts"]["win"] + res["sets"]["prompts"]["counts"]["tie"] + \
        res["sets"]["prompts"]["counts"]["loss"] == 12
    assert len(open(run_dir / "data" / "train.parquet", "rb").read()) > 0
    import pandas as pd

    assert len(pd.read_parquet(run_dir / "data" / "train.parquet")) == 48  # 60 - 12 held out as D_val
    (full,) = (run_dir / "models").glob("full-*")
    assert (full / "adapter_config.json").exists() == lora
    if lora:  # scoring runs over the adapters only
        assert main(["score", str(f)]) == 0
        table = pd.read_parquet(capsys.readouterr().out.strip().splitlines()[-1])
        assert len(table) == 48 and table["if"].notna().all() and "rm_margin" not in table
