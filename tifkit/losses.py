"""The preference objectives and what IF measures, as one object: `Objective`.

Every pair d = (x, y_w, y_l) has the implicit reward margin

    h(d) = beta * ((log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x)))

(IRM, `implicit_reward_margin`), and a per-pair training loss of h (`pair_loss`):

    objective   TRL loss_type   loss(h)
    dpo         "sigmoid"       -log sigmoid(h)
    slic        "hinge"         max(0, 1 - h)

IF differentiates a loss on the training side and measures one on the validation side; which ones is
the measurement (`score.if_measure`, docs/SCORES.md). With the linear "margin loss" m(d) = -h(d):

    measure        training side      validation side
    "val_loss"     loss(h)            loss(h)              (the paper's IF, the default)
    "val_margin"   loss(h)            m = -h
    "unweighted"   m = -h             m = -h

`Objective(loss_type, beta, measure)` holds the three together and is what the IF code
(tifkit.influence), LossDiff and IRM (tifkit.scores, tifkit.experiments) and training (tifkit.train,
through `trl_loss_type`) take: build it once from the parameters with `objective_from_params(p)`.
Its methods work on numpy arrays (float64) and on torch tensors (differentiable), and return the
same kind. In the spirit of kronfluence's Task: the training loss and the measurement are one thing
you pass, not strings threaded through every signature.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from tifkit import TifkitError

LossType = Literal["sigmoid", "hinge"]
Measure = Literal["val_loss", "val_margin", "unweighted"]
MEASURES = ("val_loss", "val_margin", "unweighted")
# train.objective -> TRL's DPOTrainer loss_type (and the per-pair loss below of the same name)
LOSS_TYPES = {"dpo": "sigmoid", "slic": "hinge"}
MARGIN = "margin"  # the linear loss m = -h of IF's margin measurements (not a training loss)


def implicit_reward_margin(policy_logps_w, policy_logps_l, ref_w, ref_l, beta: float):
    """IRM, the implicit reward margin h = beta * ((policy_w - ref_w) - (policy_l - ref_l)): the one
    definition every module uses. Torch tensors or numpy arrays."""
    return beta * ((policy_logps_w - ref_w) - (policy_logps_l - ref_l))


def pair_loss(policy_logps_w, policy_logps_l, ref_w, ref_l, beta: float, loss_type: str = "sigmoid"):
    """Per-pair loss of h = implicit_reward_margin(...): DPO (`sigmoid`: -log sigmoid(h)), SLiC
    (`hinge`: max(0, 1 - h)), or the margin measurement (`margin`: -h). Torch tensors
    (differentiable) or numpy arrays (float64); returns the same kind. Matches TRL's DPOTrainer
    `loss_type` of the same name."""
    h = implicit_reward_margin(policy_logps_w, policy_logps_l, ref_w, ref_l, beta)
    if loss_type == MARGIN:
        return -h if torch.is_tensor(h) else -np.asarray(h, dtype=np.float64)
    if torch.is_tensor(h):
        if loss_type == "sigmoid":
            return -F.logsigmoid(h)
        if loss_type == "hinge":
            return torch.relu(1 - h)
    else:
        h = np.asarray(h, dtype=np.float64)
        if loss_type == "sigmoid":
            return np.logaddexp(0.0, -h)
        if loss_type == "hinge":
            return np.maximum(0.0, 1.0 - h)
    raise TifkitError(f"Unknown loss_type {loss_type!r}; use 'sigmoid' (DPO) or 'hinge' (SLiC).")


def measure_losses(loss_type: str, measure: str = "val_loss") -> tuple[str, str]:
    """(training-side loss, validation-side loss) of IF under `measure` (module docstring);
    "margin" stands for the linear loss m = -h."""
    if measure == "val_loss":
        return loss_type, loss_type
    if measure == "val_margin":
        return loss_type, MARGIN
    if measure == "unweighted":
        return MARGIN, MARGIN
    raise TifkitError(f"Unknown IF measurement {measure!r}; use one of {', '.join(MEASURES)} (score.if_measure).")


def loss_type_of(objective: str) -> str:
    """TRL's loss_type of a training objective name (train.objective: dpo or slic)."""
    if objective not in LOSS_TYPES:
        raise TifkitError(f"train.objective must be one of {sorted(LOSS_TYPES)}, got {objective!r}.")
    return LOSS_TYPES[objective]


@dataclass(frozen=True)
class Objective:
    """The training loss, its beta and IF's measurement, as one value (module docstring).

    `pair_loss` is the training objective; `training_side` / `measurement` are the losses IF
    differentiates on a training pair / averages over the validation pairs; `irm` is h."""

    loss_type: LossType = "sigmoid"
    beta: float = 0.1
    measure: Measure = "val_loss"

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES.values():
            raise TifkitError(f"Unknown loss_type {self.loss_type!r}; use 'sigmoid' (DPO) or 'hinge' (SLiC).")
        measure_losses(self.loss_type, self.measure)  # raises on an unknown measurement

    @property
    def objective(self) -> str:
        """The train.objective name (dpo or slic)."""
        return next(k for k, v in LOSS_TYPES.items() if v == self.loss_type)

    @property
    def trl_loss_type(self) -> str:
        """TRL's DPOConfig loss_type of this objective."""
        return self.loss_type

    @property
    def sides(self) -> tuple[str, str]:
        """(training-side, validation-side) loss names of IF ("margin" = -h)."""
        return measure_losses(self.loss_type, self.measure)

    def with_measure(self, measure: str) -> Objective:
        return dataclasses.replace(self, measure=measure)

    def irm(self, policy_w, policy_l, ref_w, ref_l):
        """h = beta * ((policy_w - ref_w) - (policy_l - ref_l)) per pair."""
        return implicit_reward_margin(policy_w, policy_l, ref_w, ref_l, self.beta)

    def pair_loss(self, policy_w, policy_l, ref_w, ref_l):
        """The training loss per pair (what DPO/SLiC minimizes; LossDiff's two terms)."""
        return pair_loss(policy_w, policy_l, ref_w, ref_l, self.beta, self.loss_type)

    def training_side(self, policy_w, policy_l, ref_w, ref_l):
        """The loss IF differentiates on a training pair (the margin loss -h for "unweighted")."""
        return pair_loss(policy_w, policy_l, ref_w, ref_l, self.beta, self.sides[0])

    def measurement(self, policy_w, policy_l, ref_w, ref_l):
        """The loss IF measures on a validation pair (g_val is the mean gradient of this)."""
        return pair_loss(policy_w, policy_l, ref_w, ref_l, self.beta, self.sides[1])


def train_objective(train, measure: str = "val_loss") -> Objective:
    """The Objective of a train section (TrainParams: objective, beta), measured by `measure`."""
    return Objective(loss_type_of(train.objective), train.beta, measure)


def objective_from_params(p, measure: str | None = None) -> Objective:
    """The run's Objective: train.objective, train.beta and score.if_measure (or `measure`)."""
    return train_objective(p.train, p.score.if_measure if measure is None else measure)


def require_objective(value, parameter: str = "objective") -> Objective:
    """`value` itself when it is an Objective; otherwise a TypeError naming `parameter` (the IF and
    scoring functions take the Objective, never a bare beta or loss_type / measure strings)."""
    if not isinstance(value, Objective):
        raise TypeError(f"`{parameter}` takes a tifkit.losses.Objective, not {type(value).__name__}: pass one, e.g. "
                        "tifkit.losses.objective_from_params(params) or Objective(loss_type, beta, measure).")
    return value
