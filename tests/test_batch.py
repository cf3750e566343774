"""The batch: run.model_seed apart from the world seed, seeds in parallel worker processes (same numbers
as serially), and the provenance every result file carries."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file

from tifkit.config import load_params

ROOT = Path(__file__).resolve().parents[1]


def toy(root, *extra):
    return load_params(ROOT / "params/tiny.yaml", [
        f"run.root={root}", "world.n_sft=200", "world.n_train=48", "world.n_val=16", "world.n_test=12",
        "world.n_rm=16", "sft.steps=0", "model.hidden_size=32", "train.batch_size=16",
        "run.show_progress=false", "eval.n_bootstrap=200", *extra])


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_model_seed_changes_weights_not_world_and_world_seed_the_reverse(tmp_path):
    from tifkit.pipeline import prepare, sft_stage

    # sft.steps=0: the SFT stage saves the freshly initialized model, so its weights are the initialization
    base = prepare(toy(tmp_path), 0)                           # world 0, model seed = world seed = 0
    other_init = prepare(toy(tmp_path, "run.model_seed=7"), 0)  # world 0, model seed 7
    other_world = prepare(toy(tmp_path, "run.model_seed=0"), 1)  # world 1, model seed 0
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

    d = toy(tmp_path).to_dict()
    old_key = content_hash({**{k: d[k] for k in ("world", "data", "model", "sft", "train")}, "seed": 0,
                            "world_version": WORLD_VERSION})
    assert base.run_dir.name == f"tiny-s0-{old_key}"
