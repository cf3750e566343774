"""`tifkit report`: the data report (tifkit/datareport.py, notebooks/07_your_data).

Runs the command as a user would on the repository's example file and on a file of UltraFeedback-like
shape (tifkit.shapes lengths, annotation scores), with a tiny local checkpoint whose context is long
enough for both; checks the executed notebook and the static HTML page (figures embedded as <img>
data), the dropped rows' numbers against an independent read of the file, and that a user's folder is
never replaced. The page is also rendered in headless Chromium (Debian's `chromium` package:
`apt-get install -y chromium`) and the screenshot checked for the figures' colour; that one check is
skipped, saying why, on a machine without a chromium binary (CI's machine has none unless .ci/run
installs it).
"""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tifkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "pairs.jsonl"
SETS = ["--set", "run.show_progress=false", "--set", "train.batch_size=16", "--set", "score.batch_size=16"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny local checkpoint (char tokenizer) with a context long enough for both test files."""
    from tifkit.models import build_tiny_model
    from tifkit.tokenizer import build_char_tokenizer

    path = tmp_path_factory.mktemp("model") / "tiny-sft"
    tok = build_char_tokenizer()
    build_tiny_model("llama", tok, seed=0, hidden_size=16, num_layers=1, max_positions=256).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _ultrafeedback_like(path: Path, n: int = 40) -> Path:
    """Pairs with UltraFeedback-like lengths (tifkit.shapes, scaled to the tiny context) and annotation
    scores, written as the JSONL a user would have."""
    from tifkit.shapes import synthetic_pairs
    from tifkit.tokenizer import build_char_tokenizer

    tok = build_char_tokenizer()
    sp = synthetic_pairs(n, len(tok), seed=3, scale=0.15, first_id=4)
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for i in range(n):
            hi = float(rng.integers(6, 11))
            text = lambda ids: "".join(tok.convert_ids_to_tokens(ids))  # noqa: E731 - one character per id
            f.write(json.dumps({"pair_id": f"uf{i}", "prompt": text(sp.prompt_ids[i]),
                                "chosen": text(sp.chosen_ids[i]), "rejected": text(sp.rejected_ids[i]),
                                "score_chosen": hi, "score_rejected": hi - float(rng.integers(1, 5))}) + "\n")
    return path


@pytest.fixture(scope="module")
def reports(tmp_path_factory, tiny_model):
    """`tifkit report` on the example file and on the UltraFeedback-like file; {name: (rc, out_dir, data)}."""
    root = tmp_path_factory.mktemp("report")
    uf = _ultrafeedback_like(root / "uf_like.jsonl")
    done = {}
    for name, data in (("example", EXAMPLE), ("uf", uf)):
        out = root / f"report-{name}"
        rc = main(["report", "--data", str(data), "--model", str(tiny_model), "--set", f"run.root={root / 'runs'}",
                   *SETS, "-o", str(out)])
        done[name] = (rc, out, data)
    return done


def _summary(out: Path) -> dict:
    (path,) = (out / "figures").glob("07_*_summary.json")
    return json.loads(path.read_text())


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', html)]


@pytest.mark.parametrize("name", ["example", "uf"])
def test_report_writes_notebook_and_page_with_figures(reports, name):
    rc, out, data = reports[name]
    assert rc == 0
    assert (out / ".tifkit-output").is_file() and (out / "report.ipynb").is_file()
    nb = json.loads((out / "report.ipynb").read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    html = (out / "report.html").read_text()
    imgs = _images(html)
    assert len(imgs) >= 2  # the distributions and the overlap matrix, embedded (the page stands alone)
    assert all(b.startswith(b"\x89PNG") and len(b) > 5000 for b in imgs)
    for heading in ("Which rows were dropped", "How the three scores are spread", "low band", "middle band",
                    "high band", "How much the rules agree", "What scoring your model costs"):
        assert heading in html, heading
    s = _summary(out)
    n_rows = sum(1 for _ in open(data))
    assert s["n_in"] == n_rows and s["n_scored"] < n_rows
    assert s["memory_gib"] > 0 and s["seq_len"] > 0 and s["score_seconds"] and s["score_seconds"] > 0
    assert set(s["kept"]) >= {"tif", "lossdiff", "irm", "lossdiff-irm", "random"}


def test_dropped_rows_are_numbered_as_in_the_file(reports):
    """The report's row numbers equal an independent read of the file (identical responses, repeated ids)."""
    _, out, data = reports["example"]
    rows = [json.loads(line) for line in open(data)]
    identical = [i for i, r in enumerate(rows) if r["chosen"] == r["rejected"]]
    s = _summary(out)
    assert identical and s["dropped_rows"].get("identical_responses") == identical
    assert sum(len(v) for v in s["dropped_rows"].values()) == sum(s["dropped"].values())
    html = (out / "report.html").read_text()
    assert all(rows[i]["pair_id"] in html for i in identical)


def test_ultrafeedback_shaped_pairs_are_not_dropped(reports):
    _, out, _ = reports["uf"]
    s = _summary(out)
    assert s["dropped"]["too_long"] == 0 and sum(s["dropped"].values()) == 0
    assert "annotation-gap" in s["kept"]  # the file's annotation scores reach the rules


def test_clean_report_row_numbers(tmp_path):
    """data.CleanReport lists each dropped row's number and id (slow path: the rules by hand)."""
    from tifkit.config import DataParams
    from tifkit.data import load_pairs

    rows = [{"pair_id": "a", "prompt": "p", "chosen": "x", "rejected": "y"},
            {"pair_id": "b", "prompt": "p", "chosen": "same", "rejected": "same"},
            {"pair_id": "a", "prompt": "p", "chosen": "x", "rejected": "z"},
            {"pair_id": "c", "prompt": "p", "chosen": "  ", "rejected": "z"},
            {"pair_id": "d", "prompt": "p", "chosen": "u", "rejected": "v"}]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, rep = load_pairs(DataParams(source="jsonl", path=str(path)))
    seen, want = set(), {}
    for i, r in enumerate(rows):
        why = ("empty_response" if not r["chosen"].strip() or not r["rejected"].strip() else
               "identical_responses" if r["chosen"] == r["rejected"] else
               "duplicate_id" if r["pair_id"] in seen else "")
        seen.add(r["pair_id"])
        if why:
            want.setdefault(why, []).append(i)
    assert rep.rows == want and sum(rep.dropped.values()) == sum(map(len, want.values()))
    assert {i: rows[i]["pair_id"] for v in want.values() for i in v} == rep.ids


def test_band_examples_come_from_their_bands():
    from tifkit.datareport import band_examples

    t = pd.DataFrame({"pair_id": [f"p{i}" for i in range(30)], "if": np.random.default_rng(1).normal(size=30)})
    ex = band_examples(t, "if", {"lo": 0.2, "hi": 0.8}, n=3)
    pct = t["if"].rank().to_numpy() / len(t)
    for name, (a, b) in {"low": (0, 0.2), "middle": (0.2, 0.8), "high": (0.8, 1.0)}.items():
        got = pct[ex[name].index]
        assert len(got) == 3 and ((got > a) & (got <= b)).all(), name


def test_report_never_replaces_a_users_folder(tmp_path, tiny_model, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    argv = ["report", "--data", str(EXAMPLE), "--model", str(tiny_model), "--set", f"run.root={tmp_path / 'runs'}"]
    assert main([*argv, "-o", str(user)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tifkit: error:") and "\n" not in err and "did not write" in err
    assert [p.name for p in user.iterdir()] == ["notes.txt"] and (user / "notes.txt").read_text() == "keep me"
    assert main([*argv, "-o", str(tmp_path / "r.html")]) == 2
    assert "folder" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before any work


def _chromium() -> str | None:
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_page_renders_its_figures_in_a_browser(reports, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on this machine (Debian: apt-get install -y chromium); the page's embedded "
                    "figures are still checked by test_report_writes_notebook_and_page_with_figures")
    from matplotlib.image import imread

    _, out, _ = reports["example"]
    shot = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1280,5000", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    px = imread(shot)[..., :3].astype(float)
    assert px.std() > 0.05  # not a blank page
    colourful = (px.max(axis=2) - px.min(axis=2)) > 0.25  # figure colours, not black/grey text on white
    assert colourful.mean() > 0.002, "no figure visible in the rendered page"
