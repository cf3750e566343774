"""The selection-rule registry: every layer that names a rule reads it from here.

One `RuleSpec` per rule holds its name (lower case: params files, folder names, table rows), the
other spellings accepted for it (the paper's `LossDiff-IRM`; case is ignored), the label tables
print, the colour figures draw it in, the score-table columns it reads, whether it keeps
`round(select.keep * n)` pairs (the budget), and its selection function. config (validation of
`select.rule` and `run.rules`), select, pipeline, batch, report, results, plots, cli and the
experiments all ask this registry, so a new rule is one `register_rule(...)` call::

    from tifkit.rules import register_rule
    from tifkit.select import score_column, top_k

    def shortest(table, params, k):  # keep the k pairs with the shortest chosen answer
        return top_k(-score_column(table, "chosen_tokens", "shortest"), k)

    register_rule("shortest", shortest, label="shortest chosen answer", colour="#17becf",
                  needs=("chosen_tokens",))

A selection function takes (score table, SelectParams, k = round(keep * n)) and returns a boolean
mask over the table's rows, or a `Picked` (mask, bands, details, keep) when it has band edges or
details to report.

This module imports only the standard library, so config.py (the ground floor, which imports no
method module) may import it. The built-in rules are registered by tifkit.select, beside their
selection functions; every lookup imports tifkit.select first (lazily, at the first lookup), so the
built-ins are always there and config.py pays for numpy/pandas only when it validates a rule name.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from tifkit import TifkitError

DEFAULT_COLOUR = "#333333"  # figures draw a name the registry does not know in this grey
# the rules every other rule's WinRate is compared with, paired on the same prompts (the batch's summary,
# the README's tables)
BASELINES = ("full", "random")


class Picked(NamedTuple):
    """What a selection function may return instead of a bare mask."""

    mask: Any  # boolean numpy array over the table's rows
    bands: dict = {}  # per score column: lo, hi (percentiles), lo_value, hi_value
    details: dict = {}  # rule-specific extras (column read, band width, seed, ...)
    keep: float | None = None  # the fraction to report when it is not select.keep (explicit TIF edges)


@dataclass(frozen=True)
class RuleSpec:
    """One selection rule (see the module docstring)."""

    name: str
    select: Callable[..., Any]  # (table, SelectParams, k) -> mask or Picked
    label: str  # how tables name it
    colour: str = DEFAULT_COLOUR  # how figures draw it
    needs: tuple[str, ...] = ()  # score-table columns it reads ((): none, it needs no score table)
    uses_budget: bool = True  # keeps round(select.keep * n) pairs; False: full data, oracle
    aliases: tuple[str, ...] = ()  # other accepted spellings (the paper's), matched ignoring case
    ground_truth: bool = False  # reads the world's ground truth from the pair table: a control, not a
    # selection `tifkit select` offers (oracle)
    overlap_rank: int | None = None  # its row in the score report's "overlap with TIF" (None: no row)
    description: str = ""
    headline: bool = False  # one of the rules the family grid benchmarks (the paper's main table)

    @property
    def needs_scores(self) -> bool:
        return bool(self.needs)

    def stage_label(self, keep: float) -> str:
        """The name of the model trained on its selection: the rule, plus the keep ratio when it uses one."""
        return f"{self.name}-{keep:g}" if self.uses_budget else self.name


_REGISTRY: dict[str, RuleSpec] = {}
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def register_rule(name: str, select: Callable[..., Any], *, label: str | None = None,
                  colour: str = DEFAULT_COLOUR, needs: tuple[str, ...] | list[str] = (), uses_budget: bool = True,
                  aliases: tuple[str, ...] | list[str] = (), ground_truth: bool = False,
                  overlap_rank: int | None = None, description: str = "", replace: bool = False,
                  headline: bool = False) -> RuleSpec:
    """Add a selection rule to the registry and return its entry.

    `name` is lower case (letters, digits, hyphens): it appears in params files and folder names.
    `headline` puts the rule in the family grid (the paper's main table; tifkit.select flags its built-ins).
    A name or alias already taken raises, unless `replace=True` (a rule redefined under its name)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise TifkitError(f"Rule name {name!r} must be lower-case letters, digits and hyphens (e.g. 'shortest'); "
                          "give other spellings as aliases.")
    if not callable(select):
        raise TifkitError(f"Rule '{name}': select must be a function (table, params, k) -> mask; got {select!r}.")
    spec = RuleSpec(name=name, select=select, label=label or name, colour=colour, needs=tuple(needs),
                    uses_budget=bool(uses_budget), aliases=tuple(aliases), ground_truth=bool(ground_truth),
                    overlap_rank=overlap_rank, description=description,
                    headline=bool(headline))
    if name in _REGISTRY and not replace:
        raise TifkitError(f"Rule '{name}' is already registered; pick another name or pass replace=True to redefine it.")
    for other in _REGISTRY.values():
        clash = _keys(spec) & _keys(other) if other.name != name else set()
        if clash:
            raise TifkitError(f"Rule '{name}': {sorted(clash)[0]!r} already names rule '{other.name}'; pick another "
                              "name or alias.")
    _REGISTRY[name] = spec
    return spec


def unregister_rule(name: str) -> None:
    """Remove a rule added with `register_rule` (tests clean up with this)."""
    _REGISTRY.pop(name, None)


def _keys(spec: RuleSpec) -> set[str]:
    return {spec.name.lower(), *(a.lower() for a in spec.aliases)}


def _builtins() -> dict[str, RuleSpec]:
    importlib.import_module("tifkit.select")  # registers the built-in rules on first import
    return _REGISTRY


def all_rules() -> list[RuleSpec]:
    """Every registered rule, built-ins first, in registration order."""
    return list(_builtins().values())


def rule_names(ground_truth: bool | None = None) -> tuple[str, ...]:
    """The registered names; `ground_truth=False` leaves out the controls that read ground truth
    (what `tifkit select` offers), True keeps only those."""
    return tuple(r.name for r in all_rules() if ground_truth is None or r.ground_truth == ground_truth)


def headline_rules() -> tuple[str, ...]:
    """The rules flagged `headline` (the family grid's), in registration order."""
    return tuple(r.name for r in all_rules() if r.headline)


def find_rule(name: str) -> RuleSpec | None:
    """The entry for a name or alias (case ignored), or None."""
    if not isinstance(name, str):
        return None
    key = name.strip().lower()
    for spec in _builtins().values():
        if key in _keys(spec):
            return spec
    return None


def get_rule(name: str, what: str = "selection rule", allowed: tuple[str, ...] | None = None) -> RuleSpec:
    """The entry for a name or alias; an unknown name raises TifkitError listing the names (of
    `allowed`, when given)."""
    spec = find_rule(name)
    names = allowed if allowed is not None else rule_names()
    if spec is None or spec.name not in names:
        raise TifkitError(f"Unknown {what} {name!r}; use one of {', '.join(names)}.")
    return spec


def canonical(name: str) -> str:
    """The registered name of `name` (an alias or another case of it); unknown names raise."""
    return get_rule(name).name


def colour(name: str, default: str = DEFAULT_COLOUR) -> str:
    """A rule's colour by name or alias; `default` for names that are not rules."""
    spec = find_rule(name)
    return spec.colour if spec is not None else default


def label(name: str) -> str:
    """A rule's table label by name or alias; the name itself when it is not a rule."""
    spec = find_rule(name)
    return spec.label if spec is not None else name


def stage_label(rule: str, keep: float) -> str:
    """The model name of a rule's selection at `keep` (`full`, `oracle`, `lossdiff-irm-0.64`)."""
    return get_rule(rule).stage_label(keep)


def overlap_rules() -> tuple[str, ...]:
    """Rules compared with TIF's selection in score reports, in their display order."""
    ranked = [(r.overlap_rank, i, r.name) for i, r in enumerate(all_rules()) if r.overlap_rank is not None]
    return tuple(name for _, _, name in sorted(ranked))
