"""Judges: decide which of two responses to a prompt is better, or score one response.

Every judge has the same two methods:

    compare(prompts, responses_a, responses_b) -> list[Verdict]   # verdict for A: win / tie / loss
    score(prompts, responses) -> np.ndarray                         # one number per response

- `OracleJudge(reward_fn)`: the built-in world's oracle (or any `reward_fn(prompt, response)`).
- `RewardModelJudge(path_or_id)`: any sequence-classification checkpoint; its logit is the reward.
- `LLMJudge(base_url, model, ...)`: an OpenAI-compatible chat/completions endpoint. Pairwise
  verdicts are asked in both orders (A first, then B first) to cancel position bias; only a
  consistent preference counts as a win or loss, a disagreement is a tie. Scores are 1-10 ratings.

Judge failures never raise for one item: the verdict's `outcome` is "error" (score NaN), counted in
`judge.stats`; only a misconfiguration that would fail every call (bad key, wrong URL, endpoint down)
raises `TifkitError`.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
import socket
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from tifkit import TifkitError
from tifkit.io import content_hash
from tifkit.world import oracle_reward
# deferred: tifkit.reward (imports transformers; only the reward-model judge loads it)

Outcome = Literal["win", "tie", "loss", "error"]
VALUES = {"win": 1.0, "tie": 0.5, "loss": 0.0, "error": float("nan")}


@dataclass
class Verdict:
    """The judge's verdict for response A against response B; `raw` keeps the judge's details."""

    outcome: Outcome
    raw: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def value(self) -> float:
        """1 for a win, 0.5 for a tie, 0 for a loss, NaN for a judge error."""
        return VALUES[self.outcome]


@dataclass
class JudgeStats:
    """What happened while judging: requests, retries, timeouts, unparsable replies, errors."""

    n_requests: int = 0  # HTTP attempts (retries included)
    n_cached: int = 0  # replies read from the judge's reply cache instead of the endpoint
    n_retries: int = 0
    n_timeouts: int = 0
    n_unparsable: int = 0  # replies without a verdict/rating: counted as tie / NaN score
    n_inconsistent: int = 0  # both orders parsed but disagreed: counted as tie
    n_errors: int = 0  # items whose calls failed after all retries: outcome "error"

    def __post_init__(self):
        self._lock = threading.Lock()

    def add(self, name: str, k: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + k)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


class Judge:
    """Interface: `compare` and `score`; `stats` counts what went wrong."""

    name = "judge"

    def __init__(self):
        self.stats = JudgeStats()

    def compare(self, prompts: Sequence[str], responses_a: Sequence[str],
                responses_b: Sequence[str]) -> list[Verdict]:
        raise NotImplementedError

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


def _check_lengths(*seqs: Sequence) -> None:
    if len({len(s) for s in seqs}) != 1:
        raise TifkitError(f"Prompts and responses have different lengths {[len(s) for s in seqs]}; "
                          "pass one response per prompt.")


class ScoreJudge(Judge):
    """A judge that compares by a scalar score: A wins when score_a - score_b > tol."""

    def __init__(self, tol: float = 1e-9):
        super().__init__()
        self.tol = tol

    def verdicts_from_scores(self, scores_a, scores_b) -> list[Verdict]:
        out = []
        for sa, sb in zip(np.asarray(scores_a, float), np.asarray(scores_b, float)):
            raw = {"score_a": float(sa), "score_b": float(sb)}
            if not (np.isfinite(sa) and np.isfinite(sb)):
                self.stats.add("n_errors")
                out.append(Verdict("error", raw, error="non-finite score"))
            elif sa - sb > self.tol:
                out.append(Verdict("win", raw))
            elif sb - sa > self.tol:
                out.append(Verdict("loss", raw))
            else:
                out.append(Verdict("tie", raw))
        return out

    def compare(self, prompts, responses_a, responses_b):
        _check_lengths(prompts, responses_a, responses_b)
        return self.verdicts_from_scores(self.score(prompts, responses_a),
                                         self.score(prompts, responses_b))


# ----------------------------------------------------------------------------------------------
# Oracle


class OracleJudge(ScoreJudge):
    """Judge by an oracle reward `reward_fn(prompt, response) -> float`; equal rewards (within
    `tol`) tie."""

    name = "oracle"

    def __init__(self, reward_fn: Callable[[str, str], float], tol: float = 1e-9):
        super().__init__(tol)
        self.reward_fn = reward_fn

    @classmethod
    def from_world(cls, tol: float = 1e-9) -> "OracleJudge":
        """The built-in preference world's oracle (`tifkit.world.oracle_reward`)."""
        return cls(oracle_reward, tol)

    def score(self, prompts, responses):
        _check_lengths(prompts, responses)
        return np.array([float(self.reward_fn(p, r)) for p, r in zip(prompts, responses)])


# ----------------------------------------------------------------------------------------------
# Reward model


class RewardModelJudge(ScoreJudge):
    """Judge by a reward model: any `AutoModelForSequenceClassification` checkpoint (path or hub
    id) whose first logit is the reward. `tokenizer` defaults to the one saved with the model."""

    name = "reward_model"

    def __init__(self, path_or_id: str, trust_remote_code: bool = False, device: str | None = None,
                 batch_size: int = 8, max_length: int | None = None, tokenizer=None,
                 tol: float = 1e-9, show_progress: bool = True):
        super().__init__(tol)
        from tifkit.reward import load_reward_model

        self.path_or_id, self.batch_size, self.max_length = path_or_id, batch_size, max_length
        self.show_progress = show_progress
        self.model, saved_tokenizer = load_reward_model(path_or_id, trust_remote_code=trust_remote_code,
                                                        device=device)
        self.tokenizer = tokenizer or saved_tokenizer

    def score(self, prompts, responses):
        from tifkit.reward import reward_scores

        return reward_scores(self.model, self.tokenizer, prompts, responses, self.batch_size,
                             self.max_length, progress=self.show_progress)


# ----------------------------------------------------------------------------------------------
# LLM judge behind an OpenAI-compatible endpoint

SYSTEM_PROMPT = "You are a careful, impartial judge of AI assistant responses."

PAIRWISE_TEMPLATE = """Compare two responses to the user's question below. Judge helpfulness, \
correctness, harmlessness and clarity. Do not let the order of the responses or their length alone \
influence you.

[Question]
{prompt}

[Response A]
{response_a}

[Response B]
{response_b}

Answer with one line: "Verdict: A" if A is better, "Verdict: B" if B is better, or "Verdict: tie"."""

RATING_TEMPLATE = """Rate the response to the user's question below for helpfulness, correctness, \
harmlessness and clarity, on a scale of 1 (worst) to 10 (best).

[Question]
{prompt}

[Response]
{response}

Answer with one line: "Rating: N" where N is an integer from 1 to 10."""

_VERDICT_RE = re.compile(r"(?i:verdict)\s*[:=\-]?\s*[\s*\[(\"']*(A|B|(?i:tie))(?![\w])")
_RATING_RE = re.compile(r"(?i:rating)\s*[:=\-]?\s*[\s*\[(\"']*(\d+(?:\.\d+)?)")


def parse_pairwise(text: str | None) -> Literal["A", "B", "tie"] | None:
    """'A', 'B' or 'tie' from a judge reply ("Verdict: A", "[[B]]", "tie"); None if unparsable."""
    if not text:
        return None
    found = _VERDICT_RE.findall(text)
    token = found[-1] if found else text.strip().strip("*[]()\"'.:` \n")
    if token in ("A", "B"):
        return token
    return "tie" if token.lower() == "tie" else None


def parse_rating(text: str | None, low: float = 1, high: float = 10) -> float | None:
    """The 1-10 rating in a judge reply ("Rating: 7", "7"); None if absent or out of range."""
    if not text:
        return None
    found = _RATING_RE.findall(text)
    token = found[-1] if found else text.strip().strip("*[]()\"'.:` \n")
    try:
        value = float(token)
    except ValueError:
        return None
    return value if low <= value <= high else None


class _CallFailed(Exception):
    """One judge call failed after all retries (recorded as an error verdict, not raised)."""


class _RateLimiter:
    """At most `per_minute` calls a minute, spaced evenly (thread-safe); None or 0: no limit."""

    def __init__(self, per_minute: float | None):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        time.sleep(max(0.0, start - now))


def http_post(url: str, body: bytes, headers: dict, deadline_s: float) -> tuple[int, object, bytes]:
    """POST `body` to `url`; return (status, headers, reply bytes) or raise.

    `deadline_s` bounds the whole request (connect, send, headers and body): when it passes, a
    watchdog shuts the socket down, whatever the server is doing, and `TimeoutError` is raised. (A
    per-read socket timeout alone would let a server that drips its reply byte by byte hold a call
    for ever.) Plain http.client, no proxy support: point `base_url` at the endpoint itself."""
    u = urllib.parse.urlsplit(url)
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = cls(u.hostname, u.port, timeout=deadline_s)
    expired = threading.Event()
    held = []  # the socket (http.client drops conn.sock once the response owns it)

    def expire():  # every later read fails at once (Linux may still deliver bytes after a shutdown)
        expired.set()
        sock = held[0] if held else conn.sock
        if sock is not None:
            try:
                sock.settimeout(1e-3)
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    t_end = time.monotonic() + deadline_s
    timer = threading.Timer(deadline_s, expire)
    timer.daemon = True
    timer.start()
    late = TimeoutError(f"no complete reply within the {deadline_s:g} s deadline")
    try:
        conn.connect()
        held.append(conn.sock)
        if expired.is_set():
            raise late
        conn.request("POST", (u.path or "/") + (f"?{u.query}" if u.query else ""), body=body, headers=headers)
        resp = conn.getresponse()
        parts = []
        while True:  # the body in pieces, each read bounded by the time left
            left = t_end - time.monotonic()
            if left <= 0 or expired.is_set():
                raise late
            held[0].settimeout(left)
            piece = resp.read1(1 << 16)
            if not piece:
                break
            parts.append(piece)
        data = b"".join(parts)
        status, reply_headers = resp.status, resp.headers
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise late from None
        raise
    finally:
        timer.cancel()
        conn.close()
    if expired.is_set():
        raise late
    return status, reply_headers, data


def _retry_after(headers) -> float | None:
    """Seconds from a Retry-After header (seconds or HTTP date), or None."""
    value = headers.get("Retry-After") if headers else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class LLMJudge(Judge):
    """An LLM judge behind an OpenAI-compatible `POST {base_url}/chat/completions` endpoint.

    The API key is read only from the environment variable `api_key_env` (an empty name sends no
    key, e.g. for a local vLLM server). Calls are retried on 429, 5xx, timeouts and connection
    errors with exponential backoff (`backoff_base * 2**attempt`, or the server's Retry-After),
    each wait capped at `backoff_max` seconds; `requests_per_minute` spaces calls evenly;
    `concurrency` calls run at once. When `cache_path` is set every successful reply is appended
    to that JSONL file as it arrives, so an interrupted or partly failed run resumes without
    paying again. After `max_consecutive_failures` failed calls in a row the judge stops with a
    `TifkitError` (the endpoint is down or misconfigured).
    """

    name = "llm"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, max_retries: int = 5,
                 requests_per_minute: float | None = 60.0, concurrency: int = 4,
                 temperature: float = 0.0, max_tokens: int = 256, both_orders: bool = True,
                 backoff_base: float = 1.0, backoff_max: float = 60.0,
                 max_consecutive_failures: int = 20, cache_path: str | os.PathLike | None = None,
                 pairwise_template: str = PAIRWISE_TEMPLATE,
                 rating_template: str = RATING_TEMPLATE, system_prompt: str = SYSTEM_PROMPT,
                 show_progress: bool = True):
        super().__init__()
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model, self.timeout, self.max_retries = model, timeout, max_retries
        self.concurrency = max(1, concurrency)
        self.temperature, self.max_tokens = temperature, max_tokens
        self.both_orders, self.backoff_base, self.backoff_max = both_orders, backoff_base, backoff_max
        self.max_consecutive_failures = max_consecutive_failures
        self.pairwise_template, self.rating_template = pairwise_template, rating_template
        self.system_prompt, self.show_progress = system_prompt, show_progress
        self.api_key_env = api_key_env
        self._headers = {"Content-Type": "application/json"}  # private: holds the key
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise TifkitError(f"The LLM judge needs an API key in the environment variable "
                                  f"{api_key_env}; export {api_key_env}=<your key> (or set "
                                  "api_key_env to an empty string for an endpoint without a key).")
            self._headers["Authorization"] = f"Bearer {key}"
        self._limiter = _RateLimiter(requests_per_minute)
        self._lock = threading.Lock()
        self._failures_in_a_row = 0
        self._stopped: TifkitError | None = None  # set once the endpoint looks down
        self.cache_path = Path(cache_path) if cache_path else None
        self._cache = self._read_cache()

    # -- transport ------------------------------------------------------------------------------

    def _read_cache(self) -> dict[str, str]:
        cache = {}
        if self.cache_path and self.cache_path.exists():
            for line in self.cache_path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    cache[row["key"]] = row["reply"]
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by an interruption
        return cache

    def _remember(self, key: str, reply: str) -> None:
        with self._lock:
            self._cache[key] = reply
            if self.cache_path:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.cache_path, "a") as f:
                    f.write(json.dumps({"key": key, "reply": reply}) + "\n")

    def _post(self, body: bytes) -> str:
        """One HTTP call with retries; returns the reply text or raises `_CallFailed`."""
        for attempt in range(self.max_retries + 1):
            self._limiter.wait()
            self.stats.add("n_requests")
            wait = None
            try:
                status, headers, data = http_post(self.url, body, self._headers, self.timeout)
                if status in (401, 403, 404):
                    raise TifkitError(f"The LLM judge endpoint {self.url} answered HTTP {status} "
                                      "(bad API key, model name or URL); check the judge's "
                                      f"base_url, model and the key in ${self.api_key_env}.")
                if status == 429 or status >= 500:
                    reason, wait = f"HTTP {status}", _retry_after(headers)
                elif not 200 <= status < 300:
                    raise _CallFailed(f"HTTP {status}")
                else:
                    payload = json.loads(data.decode())
                    return payload["choices"][0]["message"]["content"] or ""
            except (TimeoutError, OSError, http.client.HTTPException) as e:
                if isinstance(e, TimeoutError):
                    self.stats.add("n_timeouts")
                reason = f"{type(e).__name__}: {e}"
            except (ValueError, KeyError, IndexError, TypeError) as e:
                reason = f"malformed response ({type(e).__name__})"
            if attempt == self.max_retries:
                raise _CallFailed(f"{reason} after {self.max_retries + 1} attempts")
            self.stats.add("n_retries")
            time.sleep(min(self.backoff_max,
                           wait if wait is not None else self.backoff_base * 2 ** attempt))
        raise AssertionError("unreachable")

    def ask(self, user_message: str) -> str:
        """The judge model's reply to one user message (cached; raises `_CallFailed`)."""
        body = {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens,
                "messages": [{"role": "system", "content": self.system_prompt},
                             {"role": "user", "content": user_message}]}
        key = content_hash(body, n=32)
        if key in self._cache:
            self.stats.add("n_cached")
            return self._cache[key]
        if self._stopped:
            raise TifkitError(str(self._stopped))
        try:
            reply = self._post(json.dumps(body).encode())
        except _CallFailed as e:
            with self._lock:
                self._failures_in_a_row += 1
                stop = self._failures_in_a_row >= self.max_consecutive_failures
            if stop:
                self._stopped = TifkitError(
                    f"The LLM judge at {self.url} failed {self.max_consecutive_failures} calls in "
                    f"a row (last: {e}); check that the endpoint is up (generations and replies "
                    "so far are cached, so a rerun resumes).")
                raise self._stopped from None
            raise
        with self._lock:
            self._failures_in_a_row = 0
        self._remember(key, reply)
        return reply

    def _map(self, fn, n: int, desc: str) -> list:
        from tqdm.auto import tqdm

        pool = ThreadPoolExecutor(self.concurrency)
        try:
            return list(tqdm(pool.map(fn, range(n)), total=n, desc=desc,
                             disable=not self.show_progress))
        finally:  # on an error (or Ctrl-C) drop the calls not yet started
            pool.shutdown(wait=True, cancel_futures=True)

    # -- judging --------------------------------------------------------------------------------

    def _one_order(self, prompt: str, first: str, second: str) -> tuple[str, str | None]:
        reply = self.ask(self.pairwise_template.format(prompt=prompt, response_a=first,
                                                       response_b=second))
        parsed = parse_pairwise(reply)
        if parsed is None:
            self.stats.add("n_unparsable")
        return reply, parsed

    def _compare_one(self, prompt: str, a: str, b: str) -> Verdict:
        to_outcome = {"A": "win", "B": "loss", "tie": "tie", None: "tie"}
        raw: dict = {}
        try:
            raw["reply_ab"], raw["parsed_ab"] = self._one_order(prompt, a, b)
            outcomes = [to_outcome[raw["parsed_ab"]]]
            if self.both_orders:  # B shown first: "A" in that reply means our B
                raw["reply_ba"], raw["parsed_ba"] = self._one_order(prompt, b, a)
                swap = {"A": "B", "B": "A", "tie": "tie", None: None}
                outcomes.append(to_outcome[swap[raw["parsed_ba"]]])
        except _CallFailed as e:
            self.stats.add("n_errors")
            return Verdict("error", raw, error=str(e))
        parsed = [raw.get("parsed_ab"), raw.get("parsed_ba")][:len(outcomes)]
        if len(set(outcomes)) > 1 and None not in parsed:
            self.stats.add("n_inconsistent")
        return Verdict(outcomes[0] if len(set(outcomes)) == 1 else "tie", raw)

    def compare(self, prompts, responses_a, responses_b):
        _check_lengths(prompts, responses_a, responses_b)
        return self._map(lambda i: self._compare_one(prompts[i], responses_a[i], responses_b[i]),
                         len(prompts), "LLM judge (pairwise)")

    def _score_one(self, prompt: str, response: str) -> float:
        try:
            reply = self.ask(self.rating_template.format(prompt=prompt, response=response))
        except _CallFailed:
            self.stats.add("n_errors")
            return float("nan")
        rating = parse_rating(reply)
        if rating is None:
            self.stats.add("n_unparsable")
            return float("nan")
        return rating

    def score(self, prompts, responses):
        _check_lengths(prompts, responses)
        return np.array(self._map(lambda i: self._score_one(prompts[i], responses[i]),
                                  len(prompts), "LLM judge (rating)"), dtype=float)
