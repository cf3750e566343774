"""tifkit.data: reading, cleaning with counted drop reasons, and writing pairs TRL loads unchanged."""
from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
from trl.data_utils import is_conversational, maybe_extract_prompt

from tifkit import TifkitError
from tifkit.data import REASONS, CleanReport, DataParams, load_pairs, save_pairs, to_trl_dataset
from tifkit.tokenizer import build_char_tokenizer

UF_MINI = Path(__file__).parent / "fixtures" / "ultrafeedback_mini.jsonl"


def world_frame() -> pd.DataFrame:
    """Three good string pairs shaped like the world's, with ground-truth columns."""
    return pd.DataFrame(
        {
            "pair_id": ["w0", "w1", "w2"],
            "prompt": ["add 1 2", "add 2 2", "add 3 1"],
            "chosen": ["3", "4", "4"],
            "rejected": ["4", "5", "2"],
            "score_chosen": [1.0, 0.5, 0.25],
            "score_rejected": [0.0, 0.1, 0.2],
            "gt_reward_chosen": np.array([0.9, 0.8, 0.7], dtype=np.float32),
            "gt_flipped": [False, True, False],
        }
    )


def bad_frame() -> pd.DataFrame:
    """One good row, then one row for each drop reason, in REASONS order (duplicate_row aside: the table has ids)."""
    rows = [
        ("ok", "add 1 2", "3", "4"),
        ("m", None, "3", "4"),  # missing_field
        ("n", "add 1 2", 3, "4"),  # non_text
        ("e", "add 1 2", "3", "   "),  # empty_response
        ("i", "add 1 2", "3", "3"),  # identical_responses
        ("ok", "add 2 2", "4", "5"),  # duplicate_id
        ("t", "add 1 2", "3" * 50, "4"),  # too_long (max_tokens=20)
    ]
    return pd.DataFrame(rows, columns=["pair_id", "prompt", "chosen", "rejected"])


def world(**kw) -> DataParams:
    return DataParams(source="world", verbose=False, **kw)


def test_each_reason_counted_and_dropped():
    df, report = load_pairs(world(max_tokens=20), tokenizer=build_char_tokenizer(), frame=bad_frame())
    assert list(df.pair_id) == ["ok"]
    # duplicate_row needs a table without ids (its own test below)
    assert report.dropped == {**dict.fromkeys(REASONS, 1), "duplicate_row": 0}
    assert (report.n_in, report.n_out) == (7, 1)
    assert "7 pairs in" in report.summary() and "1 too_long" in report.summary()


@pytest.mark.parametrize(
    "rows, reason, param",
    [
        ([("a", "p", "x", "y"), ("b", "p", "x", "x")], "identical_responses", "on_bad_rows"),
        ([("a", "p", "x", "y"), ("c", "p", "x" * 40, "y")], "too_long", "max_tokens"),
    ],
)
def test_error_mode_names_row_reason_and_parameter(rows, reason, param):
    frame = pd.DataFrame(rows, columns=["pair_id", "prompt", "chosen", "rejected"])
    with pytest.raises(TifkitError) as err:
        load_pairs(world(on_bad_rows="error", max_tokens=20), tokenizer=build_char_tokenizer(), frame=frame)
    msg = str(err.value)
    assert f"'{rows[1][0]}'" in msg and reason in msg and f"data.{param}" in msg


def test_gt_columns_pass_through_untouched():
    frame = world_frame()
    frame.loc[1, "rejected"] = frame.loc[1, "chosen"]  # dropped as identical
    df, report = load_pairs(world(), frame=frame)
    assert list(df.columns) == list(world_frame().columns)
    assert df.gt_reward_chosen.dtype == np.float32 and df.gt_flipped.dtype == bool
    assert df.gt_reward_chosen.tolist() == frame.gt_reward_chosen[[0, 2]].tolist()
    assert df.gt_flipped.tolist() == [False, False]
    assert report.dropped["identical_responses"] == 1


def test_ultrafeedback_layout_becomes_trl_conversational():
    df, report = load_pairs(DataParams(source="jsonl", path=str(UF_MINI), verbose=False))
    assert list(df.columns) == ["pair_id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected"]
    assert list(df.pair_id) == ["uf-001", "uf-002", "uf-003"]
    row = df.iloc[0].to_dict()
    assert row["prompt"] == [{"role": "user", "content": "What color is the sky?"}]
    assert row["chosen"] == [{"role": "assistant", "content": "It is blue."}]
    assert maybe_extract_prompt(row) == row  # TRL finds nothing left to extract
    dropped = {r: n for r, n in report.dropped.items() if n}
    assert dropped == {"identical_responses": 1, "empty_response": 1, "duplicate_id": 1}


def test_a_repeated_row_without_ids_is_a_duplicate_row_and_a_repeated_id_a_duplicate_id():
    rows = [("add 1 2", "3", "4"), ("add 2 2", "4", "5"), ("add 1 2", "3", "4")]
    plain = pd.DataFrame(rows, columns=["prompt", "chosen", "rejected"])
    df, rep = load_pairs(world(), frame=plain)
    assert len(df) == 2 and rep.rows == {"duplicate_row": [2]} and rep.dropped["duplicate_id"] == 0
    with_ids = plain.assign(pair_id=["a", "b", "a"]).iloc[[0, 1, 0]].assign(chosen=["3", "4", "9"])
    df, rep = load_pairs(world(), frame=with_ids)
    assert len(df) == 2 and rep.rows == {"duplicate_id": [2]} and rep.dropped["duplicate_row"] == 0


def test_mixed_formats_drop_as_non_text():
    frame = pd.DataFrame(
        {
            "prompt": ["hi", [{"role": "user", "content": "hi"}]],
            "chosen": ["a", [{"role": "assistant", "content": "a"}]],
            "rejected": ["b", [{"role": "assistant", "content": "b"}]],
        }
    )
    df, report = load_pairs(world(), frame=frame)
    assert len(df) == 1 and report.dropped["non_text"] == 1
    assert len(df.pair_id[0]) == 12  # no id column: content hash


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@pytest.mark.parametrize("conversational", [False, True])
def test_roundtrip_and_datasets_loads_the_file(tmp_path, suffix, conversational):
    if conversational:
        df, _ = load_pairs(DataParams(source="jsonl", path=str(UF_MINI), verbose=False))
    else:
        df, _ = load_pairs(world(), frame=world_frame())
    path = save_pairs(df, tmp_path / f"pairs{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    again, report = load_pairs(DataParams(source=suffix[1:], path=str(path), verbose=False))
    assert report.n_out == len(df)
    pd.testing.assert_frame_equal(again[df.columns[:6]], df[df.columns[:6]], check_dtype=False)

    ds = datasets.load_dataset(suffix[1:].replace("jsonl", "json"), data_files=str(path), split="train")
    assert ds.column_names == list(df.columns)
    assert is_conversational(ds[0]) == conversational
    assert ds[0]["prompt"] == df.prompt[0]


def test_dataset_folder_and_to_trl_dataset(tmp_path):
    df, _ = load_pairs(DataParams(source="jsonl", path=str(UF_MINI), verbose=False))
    assert to_trl_dataset(df)[1]["chosen"] == df.chosen[1]
    folder = save_pairs(df, tmp_path / "pairs")
    save_pairs(df.iloc[:2], folder)  # overwrite in place
    assert len(datasets.load_from_disk(str(folder))) == 2
    again, _ = load_pairs(DataParams(source="hub", path=str(folder), verbose=False))
    assert list(again.pair_id) == ["uf-001", "uf-002"]


def test_max_pairs_is_seeded_and_keeps_order():
    frame = pd.DataFrame({"prompt": [f"p{i}" for i in range(20)], "chosen": "a", "rejected": "b"})
    a, report = load_pairs(world(max_pairs=5, seed=1), frame=frame)
    b, _ = load_pairs(world(max_pairs=5, seed=1), frame=frame)
    assert a.equals(b) and len(a) == 5 and list(a.prompt) == sorted(a.prompt, key=lambda p: int(p[1:]))
    assert (report.n_clean, report.n_out) == (20, 5)


def test_missing_column_names_column_and_file(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a"}\n')
    with pytest.raises(TifkitError, match=r"'rejected'.*broken\.jsonl"):
        load_pairs(DataParams(source="jsonl", path=str(path)))


def test_nothing_left_after_cleaning():
    frame = pd.DataFrame({"prompt": ["p"], "chosen": ["same"], "rejected": ["same"]})
    with pytest.raises(TifkitError, match="No pairs left"):
        load_pairs(world(), frame=frame)


def test_unreachable_hub_id_gives_one_sentence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # the env var is read at import
    with pytest.raises(TifkitError) as err:
        load_pairs(DataParams(source="hub", path="nobody/no-such-prefs", verbose=False))
    msg = str(err.value)
    assert "nobody/no-such-prefs" in msg and "HF_HUB_OFFLINE=0" in msg and "'jsonl'" in msg
    assert msg.count(". ") == 0 and "\n" not in msg


def test_user_errors_are_one_sentence(tmp_path):
    with pytest.raises(TifkitError, match="frame="):
        load_pairs(DataParams(source="world"))
    with pytest.raises(TifkitError, match="tokenizer="):
        load_pairs(world(max_tokens=10), frame=world_frame())
    with pytest.raises(TifkitError, match="does not exist"):
        load_pairs(DataParams(source="parquet", path=str(tmp_path / "nope.parquet")))


def test_summary_one_line():
    report = CleanReport(n_in=10, n_out=8, source="x.jsonl")
    report.dropped["too_long"] = 2
    assert report.summary() == "data: 10 pairs in from x.jsonl, 8 kept; dropped 2 too_long"


def test_too_long_counts_tokens_as_trl_does():
    """Char tokenizer: <bos> + prompt + response + <eos>; 'ab' + 'c' is 5 tokens."""
    frame = pd.DataFrame({"pair_id": ["a"], "prompt": ["ab"], "chosen": ["c"], "rejected": ["d"]})
    tok = build_char_tokenizer()
    assert len(load_pairs(world(max_tokens=5), tokenizer=tok, frame=frame)[0]) == 1
    with pytest.raises(TifkitError, match="too_long"):
        load_pairs(world(max_tokens=4, on_bad_rows="error"), tokenizer=tok, frame=frame)


def test_saved_file_trains_with_trl_dpo_trainer(tmp_path):
    """A saved file goes into TRL's DPOTrainer unchanged, extra columns included."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(0)
    tok = build_char_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_layer=1, n_embd=8, n_head=1, n_positions=64,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "model")  # DPOTrainer builds its reference from a path
    df, _ = load_pairs(world(), frame=world_frame())
    path = save_pairs(df, tmp_path / "pairs.parquet")
    args = DPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=3, max_steps=1,
                     report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True)
    trainer = DPOTrainer(model=str(tmp_path / "model"), args=args, processing_class=tok,
                         train_dataset=datasets.load_dataset("parquet", data_files=str(path), split="train"))
    assert np.isfinite(trainer.train().training_loss)
