"""tifkit: reproduce "Towards Understanding Valuable Preference Data for LLM Alignment" (arXiv 2510.13212).

Score each preference pair by its influence on a validation set (IF), keep the middle band (TIF),
or use the cheap proxies LossDiff and IRM and their fusion LossDiff-IRM.
"""

__version__ = "0.1.0"


class TifkitError(Exception):
    """An error the user can fix: the message is one sentence naming the culprit and the fix."""
