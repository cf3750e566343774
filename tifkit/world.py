"""The built-in preference world: a small task with a hidden oracle, noisy annotators and ground truth.

Task: sort the letters of a short string. A prompt reads ``"sort dbca:"`` and the ideal response is
``"abcd"``. The oracle reward gives partial credit per position::

    r*(x, y) = #{i : y_i == t_i} / max(|y|, |t|)        in [0, 1], t = sorted(letters of x)

so a response with the right letters in the wrong places, a dropped letter, or junk appended at the
end each lose credit. A two-layer transformer learns the task partly within a minute or two on a
CPU, which leaves DPO room to help and bad pairs room to hurt.

Responses come from *generators* of different strength (the chance that each position is right) and
with different habits (some drop a letter, some append one or two extra letters). Pairs are labelled
Bradley-Terry from the oracle gap, then a fraction ``flip_rate`` of them is mislabelled. Most of the
mislabelled pairs (``systematic`` of them) are chosen among the pairs whose worse response is the
*longer* one and whose prompt is long (``bias_min_len`` letters or more): these are the pairs a
verbosity-biased annotator gets wrong, so the label noise pushes DPO in a consistent wrong direction
(keep the verbose sign-off on long prompts) instead of averaging out. The rest are flipped
uniformly at random.

The SFT demonstrations carry a verbose sign-off (``verbose_suffix``) often enough that the greedy SFT
model inherits the habit; clean preference pairs teach DPO to drop it, mislabelled ones teach it to
keep it. That is the room the selection methods have to work in.

Every pair keeps its ground truth in columns prefixed ``gt_`` (oracle rewards, flipped flag, which
generators made the responses); scoring and selection code never reads them. Each response also has
a noisy annotation score on 1-10 (the stand-in for UltraFeedback's GPT-4 ratings), with a mild
length bias of its own; as in UltraFeedback-binarized, the chosen response never has the lower
score, so the annotation-gap filter can only rank pairs by how clear-cut the annotator found them.

Everything is deterministic given (WorldConfig, seed) and takes well under a second to build.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tifkit.config import WorldConfig  # noqa: F401  (parameter section; lives in config.py)

# Bump when the generation code changes what a (config, seed) produces: cached models are keyed by it.
WORLD_VERSION = 2
PROMPT_PREFIX = "sort "
PROMPT_SUFFIX = ":"


@dataclass
class World:
    """The generated world. DataFrames; pair tables follow the column conventions of data.py."""

    config: WorldConfig
    seed: int
    sft: pd.DataFrame  # prompt, response, gt_reward
    train: pd.DataFrame  # pairs D_tr
    val: pd.DataFrame  # pairs D_val
    test: pd.DataFrame  # prompt, gt_target
    rm_train: pd.DataFrame  # pairs for the reward-model baseline

    @property
    def hash(self) -> str:
        """Content hash of everything generated (same seed and config -> same hash)."""
        h = hashlib.sha256()
        for name in ("sft", "train", "val", "test", "rm_train"):
            df = getattr(self, name)
            h.update(name.encode())
            h.update(pd.util.hash_pandas_object(df, index=True).values.tobytes())
        return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------- oracle
def make_prompt(letters: str) -> str:
    return f"{PROMPT_PREFIX}{letters}{PROMPT_SUFFIX}"


def target_of(prompt: str) -> str:
    """The ideal response of a world prompt."""
    if not (prompt.startswith(PROMPT_PREFIX) and prompt.endswith(PROMPT_SUFFIX)):
        raise ValueError(f"not a world prompt: {prompt!r}")
    return "".join(sorted(prompt[len(PROMPT_PREFIX) : -len(PROMPT_SUFFIX)]))


def oracle_reward(prompt: str, response: str) -> float:
    """Hidden oracle r*(x, y) in [0, 1]: per-position matches over max(|y|, |target|)."""
    t = target_of(prompt)
    y = response.strip()
    if not y:
        return 0.0
    hits = sum(a == b for a, b in zip(y, t))
    return hits / max(len(y), len(t))


# ------------------------------------------------------------------------------------- generators
def _sample_letters(rng: np.random.Generator, cfg: WorldConfig) -> str:
    n = int(rng.integers(cfg.min_len, cfg.max_len + 1))
    return "".join(rng.choice(list(cfg.alphabet), size=n, replace=True))


def _generate(rng: np.random.Generator, cfg: WorldConfig, letters: str, strength: float, p_verbose: float) -> str:
    """One response by a generator of the given strength (chance each position is right)."""
    t = sorted(letters)
    out = [c if rng.random() < strength else str(rng.choice(list(letters))) for c in t]
    u = rng.random()
    if u < cfg.p_drop and len(out) > 1:
        del out[int(rng.integers(len(out)))]
    elif u < cfg.p_drop + cfg.p_append:
        out += list(rng.choice(list(cfg.alphabet), size=int(rng.integers(1, 3))))
    suffix = cfg.verbose_suffix if rng.random() < p_verbose else ""
    return "".join(out) + suffix


def _annotation(rng: np.random.Generator, cfg: WorldConfig, prompt: str, response: str) -> float:
    """Noisy 1-10 annotation score with a mild length bias (the GPT-4-rating stand-in)."""
    r = oracle_reward(prompt, response)
    extra = max(0, len(response) - len(target_of(prompt)))
    s = 1.0 + 9.0 * r + cfg.annotation_length_bonus * extra + rng.normal(0.0, cfg.annotation_noise)
    return float(np.clip(np.round(s, 1), 1.0, 10.0))


def _make_pairs(rng: np.random.Generator, cfg: WorldConfig, n: int, flip_rate: float, prefix: str) -> pd.DataFrame:
    rows = []
    k = len(cfg.strengths)
    while len(rows) < n:
        letters = _sample_letters(rng, cfg)
        prompt = make_prompt(letters)
        ga, gb = rng.choice(k, size=2, replace=True)
        a = _generate(rng, cfg, letters, cfg.strengths[ga], cfg.p_verbose)
        b = _generate(rng, cfg, letters, cfg.strengths[gb], cfg.p_verbose)
        if a == b:
            continue
        ra, rb = oracle_reward(prompt, a), oracle_reward(prompt, b)
        with np.errstate(over="ignore"):  # exp overflows to inf for clear-cut pairs: p_a = 0, as it should
            p_a = 1.0 / (1.0 + np.exp(-(ra - rb) / cfg.bt_temperature))
        a_wins = rng.random() < p_a
        w, l, gw, gl, rw, rl = (a, b, ga, gb, ra, rb) if a_wins else (b, a, gb, ga, rb, ra)
        rows.append(
            dict(prompt=prompt, chosen=w, rejected=l, gt_gen_chosen=int(gw), gt_gen_rejected=int(gl),
                 gt_reward_chosen=rw, gt_reward_rejected=rl)
        )
    df = pd.DataFrame(rows)
    # Mislabel exactly round(flip_rate * n) pairs, among pairs with a strict oracle order. A share
    # `systematic` of them is drawn from the pairs a verbosity-biased annotator would get wrong
    # (the worse response is the longer one), the rest uniformly from all strict pairs.
    better_first = df.gt_reward_chosen > df.gt_reward_rejected
    worse_first = df.gt_reward_chosen < df.gt_reward_rejected
    strict = better_first | worse_first
    len_w, len_l = df.chosen.str.len(), df.rejected.str.len()
    n_letters = df.prompt.str.len() - len(PROMPT_PREFIX) - len(PROMPT_SUFFIX)
    worse_longer = ((better_first & (len_l > len_w)) | (worse_first & (len_w > len_l))) & (n_letters >= cfg.bias_min_len)
    n_flip = int(round(flip_rate * n))
    n_sys = min(int(round(cfg.systematic * n_flip)), int(worse_longer.sum()))
    sys_idx = rng.permutation(np.flatnonzero(worse_longer.values))[:n_sys]
    rest = np.setdiff1d(np.flatnonzero(strict.values), sys_idx)
    rnd_idx = rng.permutation(rest)[: n_flip - n_sys]
    # the flip sets the label *against* the oracle order (a BT draw may already have done so)
    flip = np.zeros(n, dtype=bool)
    flip[np.concatenate([sys_idx, rnd_idx]).astype(int)] = True
    # pairs not chosen for flipping keep their BT label; flipped pairs get the worse response as chosen
    to_swap = flip & better_first.values
    cols = [("chosen", "rejected"), ("gt_gen_chosen", "gt_gen_rejected"), ("gt_reward_chosen", "gt_reward_rejected")]
    for c1, c2 in cols:
        v1, v2 = df[c1].values.copy(), df[c2].values.copy()
        df.loc[to_swap, c1], df.loc[to_swap, c2] = v2[to_swap], v1[to_swap]
    df["gt_flipped"] = df.gt_reward_chosen < df.gt_reward_rejected  # label disagrees with the oracle
    df["gt_tie"] = df.gt_reward_chosen == df.gt_reward_rejected
    df["gt_forced_flip"] = flip
    # Annotation scores, UltraFeedback-style: the label agrees with the scores (the annotator who
    # preferred a response also rated it higher), so score_chosen >= score_rejected on every pair
    # and only the size of the gap carries information.
    s_c = np.array([_annotation(rng, cfg, p, y) for p, y in zip(df.prompt, df.chosen)])
    s_r = np.array([_annotation(rng, cfg, p, y) for p, y in zip(df.prompt, df.rejected)])
    df["score_chosen"], df["score_rejected"] = np.maximum(s_c, s_r), np.minimum(s_c, s_r)
    df.insert(0, "pair_id", [f"{prefix}{i:06d}" for i in range(n)])
    order = ["pair_id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected"]
    return df[order + [c for c in df.columns if c not in order]]


def build_world(cfg: WorldConfig | None = None, seed: int = 0) -> World:
    """Generate the world deterministically from (cfg, seed)."""
    cfg = cfg or WorldConfig()
    # independent streams per split, so changing n_train does not change D_val or the test prompts
    ss = np.random.SeedSequence([seed, 20251013])
    r_sft, r_tr, r_val, r_test, r_rm = (np.random.default_rng(s) for s in ss.spawn(5))

    sft_rows = []
    for _ in range(cfg.n_sft):
        letters = _sample_letters(r_sft, cfg)
        prompt = make_prompt(letters)
        strength = 1.0 if r_sft.random() < cfg.sft_exact else cfg.strengths[int(r_sft.integers(len(cfg.strengths)))]
        resp = _generate(r_sft, cfg, letters, strength, cfg.sft_verbose)
        sft_rows.append(dict(prompt=prompt, response=resp, gt_reward=oracle_reward(prompt, resp)))
    sft = pd.DataFrame(sft_rows)

    train = _make_pairs(r_tr, cfg, cfg.n_train, cfg.flip_rate, "tr")
    val = _make_pairs(r_val, cfg, cfg.n_val, cfg.val_flip_rate, "va")
    rm_train = _make_pairs(r_rm, cfg, cfg.n_rm, cfg.flip_rate, "rm")
    test_prompts = [make_prompt(_sample_letters(r_test, cfg)) for _ in range(cfg.n_test)]
    test = pd.DataFrame(dict(prompt=test_prompts, gt_target=[target_of(p) for p in test_prompts]))
    return World(config=cfg, seed=seed, sft=sft, train=train, val=val, test=test, rm_train=rm_train)


# The world fields that shape the SFT demonstrations (build_world draws them from their own stream):
# SFT models are cached by these alone, so worlds that differ only in their pairs (label noise, sizes
# of D_tr / D_val / test) share one SFT model.
SFT_FIELDS = ("alphabet", "min_len", "max_len", "n_sft", "sft_exact", "strengths", "p_append", "p_drop",
              "verbose_suffix", "sft_verbose")


def sft_key(cfg: WorldConfig, seed: int) -> str:
    """Short key of the SFT demonstrations of (config, seed): only the fields in SFT_FIELDS."""
    blob = repr([(f, getattr(cfg, f)) for f in SFT_FIELDS]) + f"|{seed}|v{WORLD_VERSION}"
    return "d" + hashlib.sha256(blob.encode()).hexdigest()[:9]
