"""End to end at toy scale: the CLI smoke run, stage caching, one-line errors."""
import json
from pathlib import Path

import pytest

from tifkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def toy_overrides(root):
    return ["--set", f"run.root={root}", "--set", "world.n_sft=300", "--set", "world.n_train=48",
            "--set", "world.n_val=16", "--set", "world.n_test=24", "--set", "world.n_rm=16",
            "--set", "sft.steps=30", "--set", "model.hidden_size=32", "--set", "train.batch_size=16",
            "--set", "run.show_progress=false"]


def test_smoke_run_end_to_end_and_cached(tmp_path, capsys):
    args = ["run", str(ROOT / "params/tiny.yaml"), *toy_overrides(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "WinRate of DPO vs SFT" in out and "oracle reward on 24 test prompts" in out
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("tiny-s0-")]
    res = json.loads((run_dir / "smoke.json").read_text())
    assert 0 <= res["sft_reward"] <= 1 and 0 <= res["dpo_reward"] <= 1
    assert 0 <= res["winrate_lo"] <= res["winrate"] <= res["winrate_hi"] <= 1
    assert sum(res["counts"][k] for k in ("win", "tie", "loss")) == 24
    assert (run_dir / "models" / "warmup" / "model.safetensors").exists()
    (full,) = (run_dir / "models").glob("full-*")  # keyed by the hash of the kept pair ids
    assert (full / "model.safetensors").exists()
    assert len(list((tmp_path / "cache" / "sft").iterdir())) == 1
    # a second run reuses every stage and the cached generations: same numbers, nothing retrained
    stamp = (full / "stage.json").stat().st_mtime_ns
    assert main(args) == 0
    out2 = capsys.readouterr().out
    assert "DPO stage" not in out2 and "SFT llama" not in out2
    assert (full / "stage.json").stat().st_mtime_ns == stamp
    assert json.loads((run_dir / "smoke.json").read_text())["winrate"] == res["winrate"]


def test_slic_objective_runs(tmp_path, capsys):
    args = ["run", str(ROOT / "params/tiny.yaml"), *toy_overrides(tmp_path), "--set", "train.objective=slic",
            "--set", "world.n_test=8"]
    assert main(args) == 0
    assert "WinRate of SLIC vs SFT" in capsys.readouterr().out


@pytest.mark.parametrize("extra, expect", [
    (["--set", "train.lr=fast"], "'train.lr' must be a number"),
    (["--set", "model.family=mamba"], "Unknown tiny model family 'mamba'"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, extra, expect):
    args = ["run", str(ROOT / "params/tiny.yaml"), *toy_overrides(tmp_path), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tifkit: error:") and expect in err and "\n" not in err


def test_cli_missing_params_file(capsys):
    assert main(["run", "params/nope.yaml"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_score_select_evaluate_commands(tmp_path, capsys):
    import pandas as pd
    from datasets import load_dataset

    base = [str(ROOT / "params/tiny.yaml"), *toy_overrides(tmp_path), "--set", "score.rm_steps=20"]
    assert main(["score", *base]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    table = pd.read_parquet(last)
    assert len(table) == 48 and {"irm", "lossdiff", "if", "tif", "rm_margin"} <= set(table.columns)

    out = tmp_path / "kept.jsonl"
    assert main(["select", *base, "--rule", "lossdiff-irm", "--keep", "0.5", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "overlap" in text.lower() and text.strip().splitlines()[-1] == str(out)
    kept = load_dataset("json", data_files=str(out), split="train")
    assert len(kept) == 24 and {"prompt", "chosen", "rejected"} <= set(kept.column_names)
    assert set(kept["pair_id"]) <= set(table.pair_id)

    assert main(["evaluate", *base, "--rule", "random", "--set", "select.keep=0.5"]) == 0
    text = capsys.readouterr().out
    assert "random on world: WinRate vs SFT" in text
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name.startswith("tiny-s0-")]
    assert len(list((run_dir / "models").glob("random-0.5-*"))) == 1
    # another selection (a different random seed) trains another model, and is evaluated as itself
    assert main(["evaluate", *base, "--rule", "random", "--set", "select.keep=0.5", "--set", "select.seed=1"]) == 0
    capsys.readouterr()
    assert len(list((run_dir / "models").glob("random-0.5-*"))) == 2
    keys = {p.stem for p in (run_dir / "eval" / "generations").glob("*.parquet")}
    assert len(keys) >= 3  # SFT + two different continuation models
