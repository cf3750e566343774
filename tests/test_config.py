"""Parameters: every shipped file loads; every user mistake gives one sentence naming key and file."""
from pathlib import Path

import pytest

from tifkit import TifkitError
from tifkit.config import Params, dump_params, load_params, parse_overrides, params_from_dict

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "params").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_params_file_loads(path):
    p = load_params(path)
    assert isinstance(p, Params) and p.source == str(path)
    # a dump loads back to the same parameters
    again = params_from_dict(__import__("yaml").safe_load(dump_params(p)))
    assert again.to_dict() == p.to_dict()


def test_real_family_files_name_hub_ids_dtype_and_lora():
    for name, fam in [("llama-3.1-8b", "llama"), ("qwen3-8b", "qwen"), ("pythia-2.8b", "pythia"),
                      ("qwen3-0.6b", "qwen"), ("llama-3.2-1b", "llama")]:
        p = load_params(ROOT / "params" / f"{name}.yaml")
        assert p.model.family == fam and p.model.name_or_path and "/" in p.model.name_or_path
        assert p.model.dtype == "bfloat16" and p.train.batch_size >= 1
    assert load_params(ROOT / "params" / "llama-3.1-8b.yaml").model.lora.enabled
    assert not load_params(ROOT / "params" / "pythia-2.8b.yaml").model.lora.enabled


def _write(tmp_path, text, name="p.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return f


def _one_sentence(msg: str):
    assert "\n" not in msg and msg.endswith(".")


def test_unknown_key_names_key_and_file(tmp_path):
    f = _write(tmp_path, "train:\n  lrr: 0.1\n")
    with pytest.raises(TifkitError) as e:
        load_params(f)
    assert str(f) in str(e.value) and "'train.lrr'" in str(e.value) and "known:" in str(e.value)
    _one_sentence(str(e.value))


def test_unknown_section(tmp_path):
    with pytest.raises(TifkitError, match=r"unknown key 'trian'"):
        load_params(_write(tmp_path, "trian: {}\n"))


@pytest.mark.parametrize("text, key, expect", [
    ("train:\n  lr: fast\n", "train.lr", "a number"),
    ("train:\n  batch_size: 3.5\n", "train.batch_size", "an integer"),
    ("train:\n  batch_size: true\n", "train.batch_size", "an integer"),
    ("model:\n  trust_remote_code: 'yes'\n", "model.trust_remote_code", "true or false"),
    ("train:\n  objective: ppo\n", "train.objective", "one of 'dpo', 'slic'"),
    ("run:\n  seeds: 3\n", "run.seeds", "a list"),
    ("run:\n  seeds: [1, two]\n", "run.seeds[1]", "an integer"),
    ("model:\n  lora: 5\n", "model.lora", "a mapping"),
    ("model:\n  lora:\n    r: big\n", "model.lora.r", "an integer"),
    ("data:\n  max_tokens: many\n", "data.max_tokens", "an integer or null"),
])
def test_wrong_type_names_key_file_and_expected_type(tmp_path, text, key, expect):
    f = _write(tmp_path, text)
    with pytest.raises(TifkitError) as e:
        load_params(f)
    msg = str(e.value)
    assert str(f) in msg and f"'{key}'" in msg and expect in msg
    _one_sentence(msg)


def test_numbers_in_yaml_scientific_notation_are_floats(tmp_path):
    p = load_params(_write(tmp_path, "train:\n  lr: 1e-4\n  beta: 1\n"))
    assert p.train.lr == 1e-4 and isinstance(p.train.beta, float)


def test_missing_file_lists_available(tmp_path):
    _write(tmp_path, "{}\n", "exists.yaml")
    with pytest.raises(TifkitError) as e:
        load_params(tmp_path / "nope.yaml")
    assert "nope.yaml does not exist" in str(e.value) and "exists.yaml" in str(e.value)
    _one_sentence(str(e.value))


def test_bad_yaml_and_non_mapping(tmp_path):
    with pytest.raises(TifkitError, match="not valid YAML at line"):
        load_params(_write(tmp_path, "train: [1, 2\n"))
    with pytest.raises(TifkitError, match="top level must be a mapping"):
        load_params(_write(tmp_path, "- 1\n- 2\n"))


def test_section_own_check_is_reported_with_file(tmp_path):
    f = _write(tmp_path, "world:\n  flip_rate: 2.0\n")
    with pytest.raises(TifkitError) as e:
        load_params(f)
    assert str(f) in str(e.value) and "world.flip_rate" in str(e.value)


def test_base_inheritance_and_cycle(tmp_path):
    _write(tmp_path, "train:\n  lr: 0.5\n  beta: 0.2\n", "a.yaml")
    b = _write(tmp_path, "base: a.yaml\ntrain:\n  beta: 0.7\n", "b.yaml")
    p = load_params(b)
    assert p.train.lr == 0.5 and p.train.beta == 0.7
    _write(tmp_path, "base: d.yaml\n", "c.yaml")
    _write(tmp_path, "base: c.yaml\n", "d.yaml")
    with pytest.raises(TifkitError, match="cycle"):
        load_params(tmp_path / "c.yaml")
    with pytest.raises(TifkitError, match="missing.yaml does not exist"):
        load_params(_write(tmp_path, "base: missing.yaml\n", "e.yaml"))


def test_overrides(tmp_path):
    f = _write(tmp_path, "train:\n  lr: 0.5\n")
    p = load_params(f, ["train.lr=0.25", "model.family=qwen", "run.seeds=[4, 5]"])
    assert p.train.lr == 0.25 and p.model.family == "qwen" and p.run.seeds == [4, 5]
    with pytest.raises(TifkitError, match="section.key=value"):
        parse_overrides(["train.lr"])
    with pytest.raises(TifkitError, match="'train.nope'"):
        load_params(f, ["train.nope=1"])
