"""Training: SFT for the tiny families, and the DPO / SLiC stages on TRL's DPOTrainer.

Stages (METHOD.md): warm-up = one epoch of DPO on D_tr from the SFT model; validation model = one
epoch on D_val from the warm-up model (or from SFT, a parameter); continuation = two epochs on a
subset from the warm-up model. The SFT model is the reference of every stage. Each stage saves its
checkpoint with save_pretrained into its own folder, written under a temporary name and renamed,
so a folder that exists is a finished stage and is not redone.
"""
from __future__ import annotations

import logging
import math
import tempfile

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from tifkit import TifkitError
from tifkit.config import SFTParams, TrainParams  # noqa: F401  (parameter section; lives in config.py)
from tifkit.io import save_stage  # noqa: F401  (re-exported: stages save through it)
from tifkit.losses import LOSS_TYPES, train_objective  # noqa: F401  (LOSS_TYPES re-exported; lives in losses.py)

log = logging.getLogger(__name__)


def _set_seed(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _sft_batches(tokenizer, prompts, responses, max_len: int):
    """Token ids of prompt+response+eos with labels masked on the prompt."""
    eos = tokenizer.eos_token_id
    items = []
    for p, r in zip(prompts, responses):
        p_ids = tokenizer(p)["input_ids"]
        full = tokenizer(p + r)["input_ids"] + [eos]
        full = full[:max_len]
        labels = [-100] * len(p_ids) + full[len(p_ids):]
        items.append((full, labels[: len(full)]))
    return items


def sft_train(model, tokenizer, prompts, responses, params: SFTParams, seed: int = 0, device: str = "cpu",
              max_len: int = 64, show_progress: bool = True):
    """Supervised fine-tuning on (prompt, response) demonstrations; loss on response tokens only."""
    _set_seed(seed)
    items = _sft_batches(tokenizer, list(prompts), list(responses), max_len)
    if not items:
        raise TifkitError("SFT got no demonstrations: check world.n_sft or the SFT data.")
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, params.warmup_steps))
        * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, params.steps)))))
    rng = np.random.default_rng(seed)
    pad = tokenizer.pad_token_id
    losses = []
    bar = tqdm(range(params.steps), desc="SFT", disable=not show_progress, leave=False)
    for _ in bar:
        idx = rng.integers(0, len(items), size=params.batch_size)
        batch = [items[i] for i in idx]
        L = max(len(x) for x, _ in batch)
        ids = torch.full((len(batch), L), pad, dtype=torch.long)
        lab = torch.full((len(batch), L), -100, dtype=torch.long)
        att = torch.zeros((len(batch), L), dtype=torch.long)
        for j, (x, y) in enumerate(batch):
            ids[j, : len(x)] = torch.tensor(x)
            lab[j, : len(y)] = torch.tensor(y)
            att[j, : len(x)] = 1
        out = model(input_ids=ids.to(device), attention_mask=att.to(device), labels=lab.to(device))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
        if len(losses) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.eval()
    return model, losses


def to_trl_frame(pairs: pd.DataFrame) -> pd.DataFrame:
    """Only the columns DPOTrainer reads (ground truth and scores stay behind)."""
    return pairs[["prompt", "chosen", "rejected"]].reset_index(drop=True)


def dpo_train(model, ref_model, tokenizer, pairs: pd.DataFrame, params: TrainParams, epochs: float, seed: int = 0,
              device: str = "cpu", show_progress: bool = True, output_dir: str | None = None,
              eval_pairs: pd.DataFrame | None = None, eval_steps: int | None = None):
    """Train `model` on `pairs` with DPO (sigmoid) or SLiC (hinge) for `epochs` on TRL's DPOTrainer.
    The loss and beta are tifkit.losses.train_objective(params): the Objective that scoring uses.

    `ref_model` is passed explicitly (TRL would otherwise reload it from the model's config path).
    With `eval_pairs` (e.g. D_val) the loss and reward margin on them are logged every `eval_steps`
    optimizer steps (and at step 0 is *not* logged: evaluate the start model yourself) as
    `eval_loss`, `eval_rewards/margins`, ... in the returned history.
    Returns (model, log_history).
    """
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    if len(pairs) == 0:
        raise TifkitError("DPO got an empty pair set: the selection kept no pairs; raise select.keep.")
    objective = train_objective(params)  # tifkit.losses: raises on an unknown train.objective
    _set_seed(seed)
    use_cpu = torch.device(device).type == "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = DPOConfig(
            output_dir=output_dir or tmp,
            num_train_epochs=epochs,
            per_device_train_batch_size=params.batch_size,
            gradient_accumulation_steps=params.grad_accum,
            learning_rate=params.lr,
            lr_scheduler_type=params.lr_scheduler,
            optim=params.optimizer,
            beta=objective.beta,
            loss_type=[objective.trl_loss_type],
            max_length=params.max_length,
            precompute_ref_log_probs=params.precompute_ref_log_probs,
            use_cpu=use_cpu,
            bf16=(not use_cpu) and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            and next(model.parameters()).dtype == torch.bfloat16,
            activation_checkpointing=False,  # the new name of gradient_checkpointing (deprecated); TRL defaults it to on
            report_to="none",
            save_strategy="no",
            logging_steps=params.logging_steps,
            seed=seed,
            data_seed=seed,
            disable_tqdm=not show_progress,
            dataloader_num_workers=0,
            eval_strategy="steps" if eval_pairs is not None else "no",
            eval_steps=eval_steps,
            per_device_eval_batch_size=params.batch_size,
        )
        trainer = DPOTrainer(model=model, ref_model=ref_model, args=cfg, processing_class=tokenizer,
                             train_dataset=Dataset.from_pandas(to_trl_frame(pairs)),
                             eval_dataset=None if eval_pairs is None else Dataset.from_pandas(to_trl_frame(eval_pairs)))
        _quiet_progress(trainer)
        trainer.train()
        history = list(trainer.state.log_history)
    model = trainer.model
    for m in (model, ref_model):
        _drop_trl_patch(m)
    model.eval()
    return model, history


def _quiet_progress(trainer) -> None:
    """Keep the training progress bar but stop it printing every log dict (they go to train_log)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class _Bar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    trainer.remove_callback(PrinterCallback)  # used when the bar is off: prints every log dict
    if any(isinstance(cb, ProgressCallback) for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_Bar())


def _drop_trl_patch(model) -> None:
    """Undo TRL's fused-LM-head patch (an instance-level `forward` bound to the original forward).

    Left in place, a deep copy of the trained model would keep calling the *original* model's forward,
    so a copy trained later would silently generate like the model it was copied from.
    """
    if model is None:
        return
    targets = [model]
    if hasattr(model, "get_base_model"):
        targets.append(model.get_base_model())
    for m in targets:
        m.__dict__.pop("forward", None)

