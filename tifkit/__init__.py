"""tifkit: reproduce "Towards Understanding Valuable Preference Data for LLM Alignment" (arXiv 2510.13212).

Score each preference pair by its influence on a validation set (IF), keep the middle band (TIF),
or use the cheap proxies LossDiff and IRM and their fusion LossDiff-IRM.
"""

__version__ = "0.1.0"

import warnings as _warnings

# tqdm.auto warns on import inside Jupyter without ipywidgets; its plain bars work, so say nothing
_warnings.filterwarnings("ignore", message="IProgress not found")


class TifkitError(Exception):
    """An error the user can fix: the message is one sentence naming the culprit and the fix."""
