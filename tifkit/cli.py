"""Command line: tifkit run | score | select | evaluate | batch | bench."""
import sys


def main(argv=None) -> int:
    print("tifkit: not wired yet", file=sys.stderr)
    return 1
