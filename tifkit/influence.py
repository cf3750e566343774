"""Influence of each training pair on the validation loss: IF(d) = < grad loss(theta; d), g_val >.

    g_val = mean over validation pairs v of grad loss(theta; v)

at the warm-up model theta, over the trainable parameters (`requires_grad=True`: every weight of a
tiny model, the LoRA adapters of a PEFT model). Positive IF: a gradient step on d lowers the
validation loss. The loss is DPO's `-log sigmoid(h)` ("sigmoid") or SLiC's `max(0, 1 - h)` ("hinge"),
with h(d) = beta * (logratio(y_w|x) - logratio(y_l|x)) and logratio = log pi_theta - log pi_ref.

The loss, beta and what IF measures come as one value, a `tifkit.losses.Objective` (build it with
`losses.objective_from_params(params)`, or `Objective(loss_type, beta, measure)`); every public
function here takes it, and nothing else names the loss (anything but an Objective is a TypeError).
What is measured on the validation side, and which loss is differentiated on the training side,
is the Objective's `measure` (influence libraries separate the training loss from the measurement).
With the margin loss m(d) = -h(d) (a linear "loss": its gradient is -grad h, with no weight):

    measure        training side          validation side (g_val)       IF(d) for DPO (sigmoid)
    "val_loss"     grad loss(theta; d)    mean_v grad loss(theta; v)    s_d * mean_v s_v <grad h_d, grad h_v>
    "val_margin"   grad loss(theta; d)    mean_v grad m(theta; v)       s_d * mean_v     <grad h_d, grad h_v>
    "unweighted"   grad m(theta; d)       mean_v grad m(theta; v)             mean_v     <grad h_d, grad h_v>

where s = sigmoid(-h) is DPO's per-pair weight (for SLiC, s = 1[h < 1]). "val_loss" is the default
(the paper's IF); "val_margin" asks how a step on d moves the mean validation margin, so that
validation pairs the model ranks wrongly (large s_v) no longer dominate; "unweighted" also drops
the training pair's weight. All three keep the sign convention: positive IF helps the validation side.

Three ways to compute it, all returning one float64 per training pair in input order:

- ``method="loop"`` (`influence_loop`): the slow, obviously-correct reference. One backward per pair,
  the full gradient flattened into one vector, dotted with g_val.
- ``method="batched"`` (the default): per-pair inner products for a whole batch from one forward and
  one backward, without ever forming a per-pair gradient (see `_InnerProductHooks` for the math).
  `batched_influence` runs it against a g_val you computed once (`validation_gradient`), for
  scoring D_tr in chunks.
- ``method="projected"``: per-pair gradients are formed one batch and one layer at a time, pushed
  through a fixed random JL projection (Rademacher or Gaussian, dimension k, seed), and IF is the
  inner product of the projections. Unbiased; the error on one score has standard deviation about
  sqrt((|g_d|^2 |g_val|^2 + IF(d)^2) / k) (see `projected_pair_gradients`).

Scoring runs in eval mode (dropout off); the model's training mode and `requires_grad` flags are
restored afterwards. Gradients are float32 (float64 for a float64 model, or with `dtype=torch.float64`).
A bfloat16/float16 model runs its forward, backward and the hooks' matmuls in its own dtype (the
GEMMs accumulate in float32 internally), while g_val, the per-row dot products and their sums over
layers are float32 (`cast_for_scoring` makes such a copy; tests/test_realscale.py checks that bf16
IF ranks pairs like fp32 IF). tifkit.memory sizes a scoring run first.
"""
from __future__ import annotations

import copy
import hashlib
import math
from contextlib import contextmanager
from typing import Callable, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from tifkit import TifkitError
from tifkit.logprobs import (
    Reduction,
    TokenizedPairs,
    cached_pair_logprobs,
    collate_sequences,
    model_device,
    pad_token_id_of,
    pair_logprobs,
    progress,
    sequence_logps,
    to_device,
)
# The objective and measurement (tifkit.losses). Re-exported here for code written before the losses
# module: implicit_reward_margin, measure_losses, MEASURES, LossType, Measure, and dpo_loss_per_pair
# (= losses.pair_loss).
from tifkit.losses import (  # noqa: F401
    MEASURES,
    LossType,
    Measure,
    Objective,
    implicit_reward_margin,
    measure_losses,
    pair_loss,
    require_objective,
)

Method = Literal["batched", "loop", "projected"]
dpo_loss_per_pair = pair_loss

try:  # GPT-2's transposed linear layer
    from transformers.pytorch_utils import Conv1D
except Exception:  # pragma: no cover
    Conv1D = ()


# ----------------------------------------------------------------------------------------------------
# Shared plumbing
# ----------------------------------------------------------------------------------------------------
def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) for every parameter with requires_grad, each shared parameter once."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise TifkitError("The model has no trainable parameter (requires_grad=True); unfreeze the layers to score.")
    return params


@contextmanager
def _scoring_mode(model: nn.Module):
    """Eval mode (dropout off) for the duration; the previous mode is restored."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _as_ref_pair(ref, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    w, l = ref
    w, l = np.asarray(w, dtype=np.float64), np.asarray(l, dtype=np.float64)
    if len(w) != n or len(l) != n:
        raise TifkitError(f"The reference log-probs for {what} have {len(w)}/{len(l)} entries for {n} pairs; recompute them for these pairs.")
    return w, l


def _pair_batch(tok: TokenizedPairs, idx: Sequence[int], pad_id: int, device):
    """Rows [chosen_0..chosen_{B-1}, rejected_0..rejected_{B-1}], right-padded to the batch's longest."""
    seqs = [(tok.prompt_ids[i], tok.chosen_ids[i]) for i in idx]
    seqs += [(tok.prompt_ids[i], tok.rejected_ids[i]) for i in idx]
    return collate_sequences(seqs, pad_id, device)


def _pair_losses(model, tok, idx, ref_w, ref_l, loss_fn, reduction, pad_id, device) -> torch.Tensor:
    """Differentiable per-pair losses (B,) for the pairs `idx` (one forward over 2B rows); `loss_fn`
    is a side of an Objective (`training_side` or `measurement`)."""
    batch = _pair_batch(tok, idx, pad_id, device)
    logps = sequence_logps(model, batch, reduction)
    B = len(idx)
    rw = to_device(ref_w[idx], logps.device).to(logps.dtype)
    rl = to_device(ref_l[idx], logps.device).to(logps.dtype)
    return loss_fn(logps[:B], logps[B:], rw, rl)


def _length_buckets(tok: TokenizedPairs, batch_size: int) -> list[np.ndarray]:
    """Pair indices in batches of similar length (longest first), to keep padding small."""
    c, r = tok.sequence_lengths()
    order = np.argsort(-np.maximum(c, r), kind="stable")
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def validation_gradient(
    model: nn.Module,
    val_tok: TokenizedPairs,
    ref_logps_val,
    objective: Objective,
    reduction: Reduction = "sum",
    batch_size: int = 16,
    show_progress: bool = False,
) -> list[torch.Tensor]:
    """g_val = mean over validation pairs of grad objective.measurement(theta; v), one tensor per
    trainable parameter (the loss for measure="val_loss", the margin loss -h(v) otherwise; module
    docstring). `objective` is a tifkit.losses.Objective.

    Batched (ordinary backward of the mean loss); returned detached, in the parameters' dtype, or in
    float32 for a bfloat16 / float16 model (accumulated in float32 across batches).
    """
    obj = require_objective(objective)
    n = len(val_tok)
    if n == 0:
        raise TifkitError("The validation set is empty; IF needs at least one validation pair.")
    rw, rl = _as_ref_pair(ref_logps_val, n, "the validation pairs")
    names, params = zip(*trainable_parameters(model))
    pad_id, device = pad_token_id_of(model), model_device(model)
    acc = [torch.zeros_like(p, dtype=_compute_dtype(model)) for p in params]
    with _scoring_mode(model):
        buckets = _length_buckets(val_tok, batch_size)
        for idx in progress(buckets, len(buckets), "validation gradient", show_progress):
            loss = _pair_losses(model, val_tok, idx, rw, rl, obj.measurement, reduction, pad_id, device).sum() / n
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for a, g in zip(acc, grads):
                if g is not None:
                    a.add_(g.to(a.dtype))
    return acc


# ----------------------------------------------------------------------------------------------------
# Exact slow reference: one backward per pair
# ----------------------------------------------------------------------------------------------------
def flat_pair_gradient(model, tok: TokenizedPairs, ref_logps, index: int, objective: Objective,
                       reduction: Reduction = "sum") -> torch.Tensor:
    """The full gradient of one pair's training-side loss (`objective.training_side`: the margin loss
    -h under measure="unweighted") over the trainable parameters, flattened (name order)."""
    return _flat_gradient(model, tok, ref_logps, index, require_objective(objective).training_side, reduction)


def _flat_gradient(model, tok, ref_logps, index, loss_fn, reduction) -> torch.Tensor:
    rw, rl = _as_ref_pair(ref_logps, len(tok), "these pairs")
    params = [p for _, p in trainable_parameters(model)]
    with _scoring_mode(model):
        loss = _pair_losses(model, tok, [index], rw, rl, loss_fn, reduction, pad_token_id_of(model), model_device(model)).sum()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])


def influence_loop(
    model: nn.Module,
    tokenized_train: TokenizedPairs,
    ref_logps_train,
    tokenized_val: TokenizedPairs,
    ref_logps_val,
    objective: Objective,
    reduction: Reduction = "sum",
    show_progress: bool = True,
) -> np.ndarray:
    """IF by the definition, one pair at a time (the reference the fast paths are tested against).

    g_val is the mean of the validation pairs' flattened gradients (one backward each), and
    IF(d) = flat_grad(d) . g_val (dot product in float64). `ref_logps_*` are (chosen, rejected) arrays.
    `objective` (a tifkit.losses.Objective) gives both sides' losses.
    """
    obj = require_objective(objective)
    n_val = len(tokenized_val)
    if n_val == 0:
        raise TifkitError("The validation set is empty; IF needs at least one validation pair.")
    g_val = None
    for i in progress(range(n_val), n_val, "validation gradient (loop)", show_progress):
        g = _flat_gradient(model, tokenized_val, ref_logps_val, i, obj.measurement, reduction).double()
        g_val = g / n_val if g_val is None else g_val + g / n_val
    n = len(tokenized_train)
    out = np.zeros(n, dtype=np.float64)
    for i in progress(range(n), n, "IF (loop)", show_progress):
        g = _flat_gradient(model, tokenized_train, ref_logps_train, i, obj.training_side, reduction)
        out[i] = float(g.double() @ g_val)
    return out


# ----------------------------------------------------------------------------------------------------
# Fast batched path: inner products from layer inputs and output gradients
# ----------------------------------------------------------------------------------------------------
class _InnerProductHooks:
    r"""Per-row gradient inner products (or per-row gradients) from one forward and one backward.

    The math. Let the batch hold R rows (sequences) and let L = sum_r loss_r, where row r's loss
    depends on the parameters only through row r's activations (true for causal LMs: rows never mix).
    A linear layer computes y_{r,t} = W a_{r,t} + c at every position t of row r. Backprop of L gives
    the output gradients b_{r,t} = dL/dy_{r,t}, and row r's own gradient is

        dloss_r/dW = sum_t b_{r,t} a_{r,t}^T          dloss_r/dc = sum_t b_{r,t}.

    Its inner product with a fixed matrix G (g_val restricted to W) never needs that outer product:

        < sum_t b_{r,t} a_{r,t}^T , G >_F  =  sum_t b_{r,t}^T G a_{r,t}  =  sum_{t,o} b_{r,t,o} (a_{r,t} G^T)_o

    which costs one extra matmul (a @ G^T) per layer, the price of one forward through that layer,
    for all rows at once. The same identity, per module type:

    - nn.Linear (W: out x in): sum_t b_t^T G a_t, bias: sum_t b_t . g_c
    - GPT-2 Conv1D (W: in x out, y = a W + c): sum_t a_t^T G b_t
    - nn.Embedding (E: V x d, y_t = E[id_t]): sum_t G[id_t] . b_t (positions with id == padding_idx
      get no gradient in PyTorch, so they are skipped)
    - any other module with trainable parameters of its own (LayerNorm, RMSNorm, ...): the
      directional derivative of its output along G, y' = J_theta y [G], from a forward-mode JVP
      of that one module (`torch.func.jvp`), then sum_t b_t . y'_t. Exact for any module whose
      output is a tensor with a leading row dimension.

    A parameter shared by several modules (tied embeddings) contributes once per use, which sums
    to its total gradient. A DPO pair occupies two rows (chosen r and rejected r + B) and its loss
    couples them; since L sums the pair losses, b already carries the pair's sigmoid factor, and
    the pair's inner product is contribution[r] + contribution[r + B].

    Per layer, G is multiplied onto the wider side (a @ G^T or b @ G), so the elementwise product
    that follows runs over min(out, in) features.

    In ``mode="grads"`` the hooks instead hand each parameter's per-row gradients (R, numel) to a
    sink (used by the random projection), formed one layer at a time.

    Two details keep the pass cheap and general:
    - the callers switch the parameters' requires_grad off during the pass (`_frozen`), so backward
      computes activation gradients only (no weight-gradient matmuls, about half of backward's
      work); each hooked module's output is then made to require grad, which keeps the graph alive
      from the first trainable module on;
    - an output shared by all rows (GPT-2's position embeddings, batch dimension 1) is expanded to
      one copy per row, so that backward delivers per-row gradients.

    Anything the hooks do not see (a parameter used outside its module's forward, e.g. a head that
    reads `embed.weight` directly) would be silently missed: `_batched_influence(verify=True)` runs
    the first batch with ordinary parameter gradients and compares, parameter by parameter.
    """

    def __init__(
        self,
        model: nn.Module,
        targets: Mapping[int, torch.Tensor] | None,
        compute_dtype: torch.dtype,
        mode: Literal["dot", "grads"] = "dot",
        sink: Callable[[nn.Parameter, torch.Tensor], None] | None = None,
        track_per_param: bool = False,
    ):
        self.model = model
        self.targets = targets  # id(param) -> G tensor shaped like the parameter (mode "dot")
        self.dtype = compute_dtype  # accumulation: per-row sums, the row dot products, per-row gradients
        # matmul operands: the model's own dtype for a bfloat16/float16 model (the GEMMs accumulate in
        # float32 inside; their outputs are summed in `dtype`), else `dtype`
        self.mm_dtype = _operand_dtype(model, compute_dtype)
        self._G_low: dict[int, torch.Tensor] = {}  # G in mm_dtype, converted once per parameter
        self.mode = mode
        self.sink = sink
        self.track = track_per_param
        self.per_param: dict[int, float] = {}
        self.rows: torch.Tensor | None = None
        self.n_rows = 0
        self._handles: list = []
        self._busy = False  # True while a generic module is re-run under jvp: hooks stand aside
        trainable = {id(p) for _, p in trainable_parameters(model)}
        self.modules: list[tuple[str, nn.Module, list[tuple[str, nn.Parameter]]]] = []
        covered: set[int] = set()
        for mname, m in model.named_modules():
            own = [(n, p) for n, p in m.named_parameters(recurse=False) if id(p) in trainable]
            if own:
                self.modules.append((mname, m, own))
                covered.update(id(p) for _, p in own)
        missing = trainable - covered
        if missing:  # pragma: no cover - every parameter belongs to some module
            raise TifkitError("Some trainable parameters belong to no module; use method='loop'.")

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self):
        for mname, m, own in self.modules:
            self._handles.append(m.register_forward_hook(self._make_hook(mname, m, own), with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def start_batch(self, n_rows: int, device):
        self.n_rows = n_rows
        self.rows = torch.zeros(n_rows, dtype=self.dtype, device=device)

    # -- helpers ---------------------------------------------------------------------------------
    def _rows3(self, x: torch.Tensor, mname: str) -> torch.Tensor:
        """(R, T, features) view of an activation whose first dimension must be the row."""
        if x.dim() >= 2 and x.shape[0] == 1 and self.n_rows > 1:  # broadcast over rows (e.g. position ids)
            x = x.expand(self.n_rows, *x.shape[1:])
        if x.dim() < 2 or x.shape[0] != self.n_rows:
            raise TifkitError(
                f"Module '{mname}' sees an activation of shape {tuple(x.shape)} without the batch's {self.n_rows} rows "
                "as first dimension; the batched influence cannot attribute it per pair, use method='loop'."
            )
        return x.reshape(self.n_rows, -1, x.shape[-1]).to(self.mm_dtype)

    def _add(self, p: nn.Parameter, contrib: torch.Tensor):
        self.rows += contrib
        if self.track:  # (sum, sum of |row contributions|) per parameter, for the check
            s, a = self.per_param.get(id(p), (0.0, 0.0))
            self.per_param[id(p)] = (s + float(contrib.sum()), a + float(contrib.abs().sum()))

    def _G(self, p) -> torch.Tensor:
        """G (g_val's part for p) in the matmul operand dtype."""
        if self.mm_dtype == self.targets[id(p)].dtype:
            return self.targets[id(p)]
        if id(p) not in self._G_low:
            self._G_low[id(p)] = self.targets[id(p)].to(self.mm_dtype)
        return self._G_low[id(p)]

    # -- the hook --------------------------------------------------------------------------------
    def _make_hook(self, mname: str, m: nn.Module, own):
        if isinstance(m, nn.Linear):
            kind = "linear"
        elif Conv1D and isinstance(m, Conv1D):
            kind = "conv1d"
        elif isinstance(m, nn.Embedding):
            kind = "embedding"
            if m.max_norm is not None or m.scale_grad_by_freq:
                kind = "generic"
        else:
            kind = "generic"
        names = {n for n, _ in own}

        def forward_hook(module, args, kwargs, output):
            if self._busy or not torch.is_grad_enabled():
                return None
            if not torch.is_tensor(output):
                raise TifkitError(
                    f"Module '{mname}' has trainable parameters but returns {type(output).__name__}, not a tensor; "
                    "the batched influence does not support it, use method='loop'."
                )
            x = args[0] if args else next(iter(kwargs.values()))
            x = x.detach()
            tangent = None
            if kind == "generic":
                tangent = self._generic_prepare(mname, module, own, args, kwargs)
            replaced = None
            if not output.requires_grad:  # frozen parameters and input: keep the graph alive from here
                replaced = output = output.detach().requires_grad_()
            if output.dim() >= 2 and output.shape[0] == 1 and self.n_rows > 1:
                # an output shared by all rows (GPT-2's position embeddings): give each row its own
                # copy, so that backward delivers per-row gradients; downstream broadcasting is unchanged
                replaced = output = output.expand(self.n_rows, *output.shape[1:])

            def backward_hook(b):
                with torch.no_grad():
                    self._contribute(kind, mname, module, own, names, x, b.detach(), tangent)

            output.register_hook(backward_hook)
            return replaced

        return forward_hook

    def _generic_prepare(self, mname, module, own, args, kwargs):
        """For 'dot': y' = d output along G (one JVP). For 'grads': the inputs, to re-run later."""
        args = tuple(a.detach() if torch.is_tensor(a) else a for a in args)
        kwargs = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in kwargs.items()}
        if self.mode == "grads":
            return (args, kwargs)
        primals = {n: p.detach() for n, p in own}
        tangents = {n: self._G(p).to(p.dtype) for n, p in own}
        return self._jvp(module, primals, tangents, args, kwargs)

    def _jvp(self, module, primals, tangents, args, kwargs):
        from torch.func import functional_call, jvp

        self._busy = True
        try:
            with torch.no_grad():
                _, ydot = jvp(lambda pp: functional_call(module, pp, args, kwargs), (primals,), (tangents,))
        finally:
            self._busy = False
        return ydot

    def _contribute(self, kind, mname, module, own, names, x, b, tangent):
        b3 = self._rows3(b, mname)  # (R, T, out)
        R = self.n_rows
        if kind == "linear" or kind == "conv1d":
            a3 = self._rows3(x, mname)  # (R, T, in)
            for n, p in own:
                if n == "weight":
                    if self.mode == "dot":
                        # sum_t b_t^T G a_t with G as (out, in) (Conv1D stores it as (in, out)).
                        # Multiply G onto the side with more features, so that the elementwise
                        # product that follows runs over the smaller of (out, in).
                        G = self._G(p)
                        Gt = G if kind == "linear" else G.T  # (out, in)
                        if Gt.shape[0] <= Gt.shape[1]:
                            self._add(p, _row_dot(a3 @ Gt.T, b3, self.dtype))  # (R, T, out) . b
                        else:
                            self._add(p, _row_dot(b3 @ Gt, a3, self.dtype))  # (R, T, in) . a
                    else:
                        eq = "rto,rti->roi" if kind == "linear" else "rto,rti->rio"
                        self.sink(p, torch.einsum(eq, b3, a3).reshape(R, -1).to(self.dtype))
                elif n == "bias":
                    gb = b3.to(self.dtype).sum(dim=1)  # (R, out)
                    if self.mode == "dot":
                        self._add(p, gb @ self.targets[id(p)].to(self.dtype))
                    else:
                        self.sink(p, gb)
                else:  # pragma: no cover
                    raise TifkitError(f"Unexpected parameter '{mname}.{n}' in a linear layer; use method='loop'.")
        elif kind == "embedding":
            ids = x.expand(R, *x.shape[1:]) if x.shape[0] == 1 else x
            ids = ids.reshape(R, -1)
            keep = torch.ones_like(ids, dtype=torch.bool) if module.padding_idx is None else ids != module.padding_idx
            (n, p), = own
            if self.mode == "dot":
                G = self._G(p)
                self._add(p, _row_dot(G[ids] * keep[..., None], b3, self.dtype))
            else:
                V, d = p.shape
                flat_idx = (torch.arange(R, device=ids.device)[:, None] * V + ids)[keep]
                g = torch.zeros(R * V, d, dtype=self.dtype, device=b3.device)
                g.index_add_(0, flat_idx, b3[keep].to(self.dtype))
                self.sink(p, g.reshape(R, -1))
        else:  # generic: contraction of the output gradient with the JVP along G
            if self.mode == "dot":
                ydot = self._rows3(tangent, mname)
                # one JVP covers all of the module's parameters: booked under the first one
                self._add(own[0][1], _row_dot(ydot, b3, self.dtype))
            else:
                self._generic_grads(mname, module, own, tangent, b3)

    def _generic_grads(self, mname, module, own, saved, b3):
        """Per-row gradients of a small module's own parameters: one JVP per parameter coordinate."""
        args, kwargs = saved
        primals = {n: p.detach() for n, p in own}
        for n, p in own:
            cols = []
            numel = p.numel()
            for j in range(numel):
                e = torch.zeros(numel, dtype=p.dtype, device=p.device)
                e[j] = 1
                tangents = {k: (e.view_as(q) if k == n else torch.zeros_like(q)) for k, q in primals.items()}
                ydot = self._rows3(self._jvp(module, primals, tangents, args, kwargs), mname)
                cols.append((ydot.to(self.dtype) * b3.to(self.dtype)).sum(dim=(1, 2)))
            self.sink(p, torch.stack(cols, dim=1))  # (R, numel)


def _row_dot(x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """sum over all but the first axis of x * y, as one batched matrix product (no (R, T, k) temporary);
    in `dtype` (float32 for bfloat16 operands: a long sum in bfloat16 would lose the small terms)."""
    R = x.shape[0]
    if dtype is not None:
        x, y = x.to(dtype), y.to(dtype)
    return torch.bmm(x.reshape(R, 1, -1), y.reshape(R, -1, 1)).reshape(R)


@contextmanager
def _frozen(params: Sequence[nn.Parameter]):
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def _compute_dtype(model) -> torch.dtype:
    """Accumulation dtype of IF: float64 for a float64 model, else float32 (bfloat16 models included)."""
    return torch.float64 if next(model.parameters()).dtype == torch.float64 else torch.float32


def _operand_dtype(model, compute_dtype: torch.dtype) -> torch.dtype:
    """Matmul operand dtype of the hooks: a half-precision model's own dtype, else the compute dtype."""
    dt = next(model.parameters()).dtype
    return dt if dt in (torch.bfloat16, torch.float16) else compute_dtype


def _check_per_param(model, hooks: _InnerProductHooks, targets, generic_groups) -> None:
    """Compare, parameter by parameter, the hooks' summed contributions with <p.grad, G_p>."""
    expected: dict[int, float] = {}
    names = {}
    for n, p in trainable_parameters(model):
        names[id(p)] = n
        g = p.grad
        expected[id(p)] = 0.0 if g is None else float((g.double() * targets[id(p)].double()).sum())
    # a generic module's contributions are booked under its first parameter: compare group totals
    for first, others in generic_groups.items():
        for o in others:
            expected[first] += expected.pop(o)
    scale = sum(abs(v) for v in expected.values()) + 1e-30
    # half-precision models: autograd's p.grad and the hooks' operands are rounded to 8 bits of mantissa
    rel = 3e-2 if next(model.parameters()).dtype in (torch.bfloat16, torch.float16) else 1e-3
    for pid, want in expected.items():
        got, spread = hooks.per_param.get(pid, (0.0, 0.0))
        # rounding: relative to the result and to the size of the row terms that were summed
        if abs(got - want) > rel * max(abs(got), abs(want)) + 0.1 * rel * spread + 1e-4 * rel * scale:
            raise TifkitError(
                f"The batched influence misses part of the gradient of '{names[pid]}' (hooks {got:.6g}, autograd {want:.6g}); "
                "this model uses the parameter outside its module's forward, score it with method='loop'."
            )


def _batched_influence(
    model, train_tok, ref_train, targets, objective: Objective, reduction, batch_size, verify, show_progress
) -> np.ndarray:
    """IF for every training pair by `_InnerProductHooks` (targets: id(param) -> g_val part), of the
    training-side loss of `objective`."""
    n = len(train_tok)
    rw, rl = _as_ref_pair(ref_train, n, "the training pairs")
    params = [p for _, p in trainable_parameters(model)]
    pad_id, device = pad_token_id_of(model), model_device(model)
    dtype = _compute_dtype(model)
    out = torch.zeros(n, dtype=torch.float64, device=device)  # filled on the device: no sync per batch
    hooks = _InnerProductHooks(model, targets, dtype, mode="dot")
    generic_groups = {
        id(own[0][1]): [id(p) for _, p in own[1:]]
        for _, m, own in hooks.modules
        if not isinstance(m, (nn.Linear, nn.Embedding)) and not (Conv1D and isinstance(m, Conv1D))
    }
    buckets = _length_buckets(train_tok, batch_size)
    with _scoring_mode(model), hooks:
        for k, idx in enumerate(progress(buckets, len(buckets), "IF (batched)", show_progress)):
            B = len(idx)
            check = verify and k == 0
            hooks.track = check
            hooks.per_param.clear()
            hooks.start_batch(2 * B, device)
            if check:  # ordinary backward with parameter gradients, to check the hooks against autograd
                for p in params:
                    p.grad = None
                loss = _pair_losses(model, train_tok, idx, rw, rl, objective.training_side, reduction, pad_id, device).sum()
                loss.backward()
                _check_per_param(model, hooks, targets, generic_groups)
                for p in params:
                    p.grad = None
            else:
                with _frozen(params):
                    loss = _pair_losses(model, train_tok, idx, rw, rl, objective.training_side, reduction, pad_id,
                                        device).sum()
                    if loss.requires_grad:
                        loss.backward()
            rows = hooks.rows
            out[to_device(idx, device)] = (rows[:B] + rows[B:]).double()
    return out.cpu().numpy()


def batched_influence(
    model: nn.Module,
    train_tok: TokenizedPairs,
    ref_logps_train,
    g_val: Sequence[torch.Tensor],
    objective: Objective,
    reduction: Reduction = "sum",
    batch_size: int = 16,
    verify: bool = True,
    show_progress: bool = True,
) -> np.ndarray:
    """IF of every training pair against a given g_val (as `validation_gradient` returns it, one
    tensor per `trainable_parameters(model)`), by the batched hooks. For scoring D_tr in chunks
    against one validation gradient; `influence_scores(method="batched")` is this after g_val.
    `objective`'s training side (a tifkit.losses.Objective) is differentiated."""
    obj = require_objective(objective)
    named = trainable_parameters(model)
    if len(g_val) != len(named) or any(g.shape != p.shape for (_, p), g in zip(named, g_val)):
        raise TifkitError("g_val does not match the model's trainable parameters; compute it with validation_gradient(model, ...).")
    targets = {id(p): g for (_, p), g in zip(named, g_val)}
    return _batched_influence(model, train_tok, ref_logps_train, targets, obj, reduction, batch_size, verify,
                              show_progress)


# ----------------------------------------------------------------------------------------------------
# Random projection
# ----------------------------------------------------------------------------------------------------
class RandomProjection:
    """A fixed JL projection P (k x D) of the flattened trainable parameters, never stored whole.

    Entries are +-1/sqrt(k) (Rademacher) or N(0, 1/k) (Gaussian), generated per parameter and per
    block of rows from a seed derived from (seed, parameter name, block), so the same seed gives the
    same P on every call, in every process. E[<Pu, Pv>] = <u, v>; Var = (|u|^2|v|^2 + <u,v>^2)/k for
    Gaussian entries, a little less for Rademacher. Blocks are kept in memory up to `cache_bytes`.
    """

    block_elems = 1 << 22  # entries per generated block

    def __init__(self, names_params, k: int, seed: int = 0, kind: Literal["rademacher", "gaussian"] = "rademacher", cache_bytes: int = 256 << 20):
        if k < 1:
            raise TifkitError(f"project_dim must be >= 1, got {k}.")
        if kind not in ("rademacher", "gaussian"):
            raise TifkitError(f"Unknown projection {kind!r}; use 'rademacher' or 'gaussian'.")
        self.k, self.seed, self.kind = int(k), int(seed), kind
        self.name_of = {id(p): n for n, p in names_params}
        self.cache: dict[tuple[str, int], torch.Tensor] = {}
        self.cache_left = cache_bytes

    def _block(self, name: str, j: int, rows: int, dtype, device) -> torch.Tensor:
        key = (name, j)
        if key in self.cache:
            return self.cache[key].to(dtype)
        s = int(hashlib.sha256(f"{self.seed}|{name}|{j}".encode()).hexdigest()[:15], 16)
        g = torch.Generator(device="cpu").manual_seed(s)
        if self.kind == "rademacher":
            P = torch.randint(0, 2, (rows, self.k), generator=g, dtype=torch.int8).to(torch.float32) * 2 - 1
        else:
            P = torch.randn(rows, self.k, generator=g, dtype=torch.float32)
        P = (P / math.sqrt(self.k)).to(device)
        if P.numel() * 4 <= self.cache_left:
            self.cache[key] = P
            self.cache_left -= P.numel() * 4
        return P.to(dtype)

    def project(self, p: nn.Parameter, flat: torch.Tensor) -> torch.Tensor:
        """(rows, numel) -> (rows, k): the part of P.g that belongs to parameter `p`."""
        name = self.name_of[id(p)]
        D = flat.shape[1]
        step = max(1, self.block_elems // self.k)
        out = torch.zeros(flat.shape[0], self.k, dtype=flat.dtype, device=flat.device)
        for j, s in enumerate(range(0, D, step)):
            e = min(D, s + step)
            out += flat[:, s:e] @ self._block(name, j, e - s, flat.dtype, flat.device)
        return out


def projected_pair_gradients(
    model: nn.Module,
    tok: TokenizedPairs,
    ref_logps,
    objective: Objective,
    projection: RandomProjection,
    reduction: Reduction = "sum",
    batch_size: int = 16,
    show_progress: bool = True,
) -> np.ndarray:
    """P . grad loss(theta; d) for every pair d (the training side of `objective`, a
    tifkit.losses.Objective), shape (N, k), float64, input order.

    Per-pair gradients are formed one batch and one layer at a time (R x numel) by the same hooks
    as the batched path, projected, and summed over layers; the full per-pair gradient never exists.
    """
    loss_fn = require_objective(objective).training_side
    n = len(tok)
    rw, rl = _as_ref_pair(ref_logps, n, "these pairs")
    params = [p for _, p in trainable_parameters(model)]
    pad_id, device = pad_token_id_of(model), model_device(model)
    dtype = _compute_dtype(model)
    out = torch.zeros((n, projection.k), dtype=torch.float64, device=device)
    acc: dict[str, torch.Tensor] = {}

    def sink(p, per_row):  # (2B, numel) -> per pair (B, numel) -> projected, summed over layers
        B = per_row.shape[0] // 2
        acc["z"] = acc["z"] + projection.project(p, per_row[:B] + per_row[B:])

    hooks = _InnerProductHooks(model, None, dtype, mode="grads", sink=sink)
    buckets = _length_buckets(tok, batch_size)
    with _scoring_mode(model), hooks, _frozen(params):
        for idx in progress(buckets, len(buckets), "projected gradients", show_progress):
            B = len(idx)
            hooks.start_batch(2 * B, device)
            acc["z"] = torch.zeros(B, projection.k, dtype=dtype, device=device)
            loss = _pair_losses(model, tok, idx, rw, rl, loss_fn, reduction, pad_id, device).sum()
            if loss.requires_grad:
                loss.backward()
            out[to_device(idx, device)] = acc["z"].double()
    return out.cpu().numpy()


def project_vector(projection: RandomProjection, model: nn.Module, grads: Sequence[torch.Tensor]) -> np.ndarray:
    """P . g for a gradient given per trainable parameter (e.g. g_val), shape (k,)."""
    z = None
    for (_, p), g in zip(trainable_parameters(model), grads):
        part = projection.project(p, g.detach().reshape(1, -1).to(_compute_dtype(model)))[0]
        z = part if z is None else z + part
    return z.double().cpu().numpy()


# ----------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------
def _resolve_ref(ref, train_tok, val_tok, batch_size, reduction, cache_dir, show_progress, dtype):
    """Reference log-probs ((w, l) for train, (w, l) for val) from a model or given arrays."""
    if isinstance(ref, nn.Module):
        if dtype is not None and next(ref.parameters()).dtype != dtype:
            ref = copy.deepcopy(ref).to(dtype)

        def lp(tok):
            if cache_dir is not None:
                return cached_pair_logprobs(ref, tok, cache_dir, batch_size=batch_size, reduction=reduction, show_progress=show_progress)
            return pair_logprobs(ref, tok, batch_size=batch_size, reduction=reduction, show_progress=show_progress)

        return lp(train_tok), lp(val_tok)
    if isinstance(ref, Mapping):
        if "train" not in ref or "val" not in ref:
            raise TifkitError("Reference log-probs given as a mapping need keys 'train' and 'val', each (chosen, rejected).")
        return ref["train"], ref["val"]
    if isinstance(ref, (tuple, list)) and len(ref) == 2:
        return ref[0], ref[1]
    raise TifkitError("ref must be the reference model or its log-probs ((train_w, train_l), (val_w, val_l)).")


class ValidationTarget:
    """IF against one validation gradient, for any number of training-pair sets (e.g. chunks).

    Built once from g_val (as `validation_gradient` returns it) and the Objective g_val was computed
    with (`objective`, whose training side `scores` differentiates); `scores(tok, ref_logps)` gives
    < grad training-side loss(theta; d), g_val > for the pairs of `tok` by `method`: "batched" (hooks,
    exact), "loop" (one backward per pair, exact) or "projected" (JL projection to `project_dim`,
    `seed`, whose projected g_val is computed here once).
    """

    def __init__(self, model: nn.Module, g_val: Sequence[torch.Tensor], objective: Objective,
                 method: Method = "batched", project_dim: int | None = None, seed: int = 0,
                 projection: Literal["rademacher", "gaussian"] = "rademacher"):
        self.objective = require_objective(objective)
        if method not in ("batched", "loop", "projected"):
            raise TifkitError(f"Unknown influence method {method!r}; use 'batched', 'loop' or 'projected'.")
        if (method == "projected") != (project_dim is not None):
            raise TifkitError("Set project_dim together with method='projected' (and only then).")
        self.model, self.g_val, self.method = model, g_val, method
        if method == "loop":
            self.g_flat = torch.cat([g.reshape(-1) for g in g_val]).double()
        elif method == "projected":
            self.P = RandomProjection(trainable_parameters(model), project_dim, seed=seed, kind=projection)
            self.z_val = project_vector(self.P, model, g_val)

    def scores(self, tok: TokenizedPairs, ref_logps, reduction: Reduction = "sum", batch_size: int = 16,
               verify: bool = True, show_progress: bool = True) -> np.ndarray:
        """IF of the pairs of `tok` under the Objective given at construction."""
        obj, m = self.objective, self.model
        if self.method == "batched":
            return batched_influence(m, tok, ref_logps, self.g_val, obj, reduction, batch_size, verify,
                                     show_progress)
        if self.method == "loop":
            return np.array([float(_flat_gradient(m, tok, ref_logps, i, obj.training_side, reduction).double()
                                   @ self.g_flat) for i in range(len(tok))])
        Z = projected_pair_gradients(m, tok, ref_logps, obj, self.P, reduction, batch_size, show_progress)
        return Z @ self.z_val


def influence_scores(
    model: nn.Module,
    ref,
    train_tok: TokenizedPairs,
    val_tok: TokenizedPairs,
    objective: Objective = Objective(),
    method: Method = "batched",
    batch_size: int = 16,
    reduction: Reduction = "sum",
    project_dim: int | None = None,
    seed: int = 0,
    projection: Literal["rademacher", "gaussian"] = "rademacher",
    dtype: torch.dtype | None = None,
    ref_cache_dir: str | None = None,
    verify: bool = True,
    show_progress: bool = True,
) -> np.ndarray:
    """IF(d) = < grad loss(theta; d), g_val > for every training pair, float64, in input order.

    Args:
        model: the warm-up policy theta; its trainable (requires_grad) parameters are differentiated.
        ref: the reference model pi_ref, or its log-probs as ((train_w, train_l), (val_w, val_l)) or
            {"train": (w, l), "val": (w, l)}.
        train_tok, val_tok: `tokenize_pairs` output for D_tr and D_val.
        objective: a tifkit.losses.Objective (loss, beta and measurement as one value, e.g.
            `objective_from_params(params)`); default `Objective()`: DPO ("sigmoid"), beta 0.1,
            measure "val_loss" (the paper's IF; "val_margin" and "unweighted": module docstring).
        method: "batched" (default, exact, one forward+backward per batch), "loop" (exact, one
            backward per pair, slow reference), "projected" (JL projection to `project_dim`, `seed`).
        batch_size: pairs per batch (each pair is two sequences).
        reduction: "sum" (default) or "mean" log-probs, as used for training.
        dtype: e.g. torch.float64 to score a float64 copy of the model (tests); None keeps the model's.
        ref_cache_dir: cache the reference log-probs there (see `cached_pair_logprobs`).
        verify: batched path only: on the first batch, compare every parameter's summed hook
            contribution with autograd's gradient and raise if a part of the gradient is missed.
    """
    obj = require_objective(objective)
    if method not in ("batched", "loop", "projected"):
        raise TifkitError(f"Unknown influence method {method!r}; use 'batched', 'loop' or 'projected'.")
    if (method == "projected") != (project_dim is not None):
        raise TifkitError("Set project_dim together with method='projected' (and only then).")
    if dtype is not None and next(model.parameters()).dtype != dtype:
        model = copy.deepcopy(model).to(dtype)
    ref_train, ref_val = _resolve_ref(ref, train_tok, val_tok, 2 * batch_size, reduction, ref_cache_dir, show_progress, dtype)
    if method == "loop":  # the slow reference forms g_val by its own loop too
        return influence_loop(model, train_tok, ref_train, val_tok, ref_val, obj, reduction, show_progress)
    g_val = validation_gradient(model, val_tok, ref_val, obj, reduction, batch_size, show_progress)
    target = ValidationTarget(model, g_val, obj, method, project_dim, seed, projection)
    return target.scores(train_tok, ref_train, reduction, batch_size, verify, show_progress)


# ----------------------------------------------------------------------------------------------------
# Precision and memory
# ----------------------------------------------------------------------------------------------------
SCORING_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def cast_for_scoring(model: nn.Module, dtype: str = "model") -> nn.Module:
    """The model in the scoring dtype (`score.dtype`): "model" keeps it; "float32" / "bfloat16" give a
    cast copy (the caller's model is untouched) unless it already has that dtype. The requires_grad
    flags (all weights, or LoRA adapters only) carry over."""
    if dtype == "model":
        return model
    if dtype not in SCORING_DTYPES:
        raise TifkitError(f"Unknown score.dtype {dtype!r}; use model, float32 or bfloat16.")
    want = SCORING_DTYPES[dtype]
    if next(model.parameters()).dtype == want:
        return model
    return copy.deepcopy(model).to(want)
