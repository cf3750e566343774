"""Shared test set-up: offline, quiet, single-threaded torch (CI has 2 cores), and the toy pipeline.

The toy pipeline settings live here once (`TOY_SETTINGS`), with one run root shared by the whole test
run (the `toy` fixture): SFT, the warm-up and validation stages, the reward model and the score table
are trained once per test run and read by every test that uses the same settings. That is safe
because every cache is keyed by the hash of its parameters and guarded by a stage lock. A test that
damages caches works on `toy.private_copy(...)`, never on the shared root."""
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=FutureWarning)

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "params" / "tiny.yaml"

# The toy pipeline: a world of 48 training pairs on a 32-wide llama, a short SFT; a few seconds a stage.
TOY_SETTINGS = (
    "world.n_sft=200", "world.n_train=48", "world.n_val=16", "world.n_test=12", "world.n_rm=16",
    "sft.steps=20", "model.hidden_size=32", "train.batch_size=16", "score.rm_steps=10",
    "eval.n_bootstrap=200", "run.show_progress=false",
)
TOY_N_TRAIN, TOY_N_TEST = 48, 12  # the sizes above, for assertions


@dataclass(frozen=True)
class Toy:
    """The toy settings and the run root every test of this run shares (see the module docstring)."""

    root: Path

    def overrides(self, *extra: str, root=None) -> list[str]:
        """["section.key=value", ...]: run.root (the shared root unless `root`), the toy settings, `extra`."""
        return [f"run.root={root if root is not None else self.root}", *TOY_SETTINGS, *extra]

    def params(self, *extra: str, root=None):
        """The toy parameters (tiny.yaml plus the toy settings plus `extra`)."""
        from tifkit.config import load_params

        return load_params(TINY, self.overrides(*extra, root=root))

    def cli(self, *extra: str, root=None) -> list[str]:
        """The same as `tifkit` command-line arguments after the params file: ["--set", "k=v", ...]."""
        return [a for item in self.overrides(*extra, root=root) for a in ("--set", item)]

    def private_copy(self, dest: Path, *extra: str) -> Path:
        """Finish the scored toy run (SFT, warm-up, validation, reward model, score table) in the shared
        root, then copy its run folder and its SFT folder into `dest` (a root of this test's own), so
        that a test may damage them without touching what other tests read. Returns `dest`."""
        from tifkit.pipeline import prepare, score_stage, sft_stage

        ctx = prepare(self.params(*extra), 0)
        score_stage(ctx)
        sft = Path(sft_stage(ctx))
        shutil.copytree(ctx.run_dir, Path(dest) / ctx.run_dir.name)
        shutil.copytree(sft, Path(dest) / sft.relative_to(self.root))
        return Path(dest)


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Toy:
    """The toy settings with one run root for the whole test run (SFT trains once per run).

    Under pytest-xdist (`make test` runs `-n logical`) every worker is a session of its own, so the root
    lies in the folder the workers share (the parent of each worker's base temp): the first worker to
    need a stage trains it under the stage's lock, the others wait for it and read it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent / "toy-runs"
        root.mkdir(exist_ok=True)
        return Toy(root)
    return Toy(tmp_path_factory.mktemp("toy-runs"))


@pytest.fixture(scope="session")
def char_tokenizer():
    from tifkit.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


@pytest.fixture(scope="session")
def plain_model(tmp_path_factory):
    """A tiny local checkpoint (64 positions) whose tokenizer has no chat template: the own-data route's
    model in the CLI tests (test_bad_input, test_user_files)."""
    from tifkit.models import build_tiny_model
    from tifkit.tokenizer import build_char_tokenizer

    path = tmp_path_factory.mktemp("plain-model")
    tok = build_char_tokenizer()
    build_tiny_model("llama", tok, seed=0, hidden_size=16, num_layers=1).save_pretrained(path)
    tok.save_pretrained(path)
    return path
