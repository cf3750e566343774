"""Shared test set-up: offline, quiet, single-threaded torch (CI has 2 cores)."""
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="session")
def char_tokenizer():
    from tifkit.tokenizer import build_char_tokenizer

    return build_char_tokenizer()
