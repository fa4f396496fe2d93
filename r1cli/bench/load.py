"""What `r1 bench` sends: request shapes.

- random: prompts of a given token length and outputs of a given length, as `vllm bench serve
  --dataset-name random` makes them: the prompt text is `input_len` minus the tokenizer's special
  tokens long (the chat template adds its own around it), and the request carries `ignore_eos` with
  `max_tokens` = `output_len`, so every request generates exactly that many tokens (no `min_tokens`:
  vLLM's benchmark does not send it, and it would put a logits processor in the engine's way).
  The lengths are measured with the server's own tokenizer (/tokenize, /detokenize), so no tokenizer
  is needed here. Prompts are English words drawn with a seed, different for every request, so the
  prefix cache shares nothing between them (as vLLM's random token ids).
- dataset: real R1 prompts (an eval set or file), with the R1 prompt rules (the math directive,
  the think prefill where the served template lacks it) and DeepSeek's sampling; each request runs
  to the model's own end (or `max_tokens`): long reasoning, short answers.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from r1cli import rules
from r1cli.client import http as r1http, stream, sync, turn
from r1cli.client.target import Target
from r1cli.errors import R1Error, UsageError

# Common English words: with any real tokenizer about one token each, so prompts read like text.
_WORD_TEXT = (
    "the of and to in is was for on that with as by at from his her they this which be or had not are but "
    "one all were we when there can an your their said each she do how if will up other about out many then "
    "them these so some would make like him into time has two more go see number no way could people my than "
    "first water been call who oil its now find long down day did get come made may part over new sound take "
    "only little work know place year live me back give most very after thing our just name good sentence man "
    "think say great where help through much before line right too mean old any same tell boy follow came want "
    "show also around form three small set put end does another well large must big even such because turn here "
    "why ask went men read need land different home us move try kind hand picture again change off play spell "
    "air away animal house point page letter mother answer found study still learn should world high every near "
    "add food between own below country plant last school father keep tree never start city earth eye light "
    "thought head under story saw left few while along might close something seem next hard open example begin "
    "life always those both paper together got group often run important until children side feet car mile night "
    "walk white sea began grow took river four carry state once book hear stop without second later miss idea "
    "enough eat face watch far indian really almost let above girl sometimes mountain cut young talk soon list "
    "song being leave family"
)
WORDS = tuple(_WORD_TEXT.split())


@dataclass
class Shape:
    """One request: the chat messages and request fields, sent exactly as they are."""

    messages: list[dict]
    params: dict
    prompt_len: int | None = None  # tokens of the prompt text (random shapes), before the chat template

    def to_dict(self) -> dict:
        return {"messages": self.messages, "params": self.params, "prompt_len": self.prompt_len}


# ------------------------------------------------------------------------------------------ random
def fixed_length_params(output_len: int, **sampling) -> dict:
    """Exactly output_len tokens, whatever the model would say (vLLM's random dataset sets ignore_eos)."""
    return turn.Sampling(**sampling, max_tokens=output_len, extra={"ignore_eos": True}).params()


def special_tokens_added(target: Target) -> int:
    """How many tokens the tokenizer adds to a bare prompt (a BOS): vLLM's random prompts leave room for them."""
    with_special = sync.tokenize(target, {"prompt": "a", "add_special_tokens": True})
    bare = sync.tokenize(target, {"prompt": "a", "add_special_tokens": False})
    return max(0, len(with_special) - len(bare))


def detokenize(target: Target, tokens: list[int], timeout: float = 30.0) -> str:
    try:
        resp = r1http.request("POST", target.root + "/detokenize", body={"model": target.model, "tokens": tokens},
                              headers=target.headers, timeout=timeout)
    except r1http.Unreachable as exc:
        raise stream.unreachable(target, str(exc)) from None
    if resp.status != 200:
        raise R1Error(f"the server's /detokenize answered {resp.status}",
                      hint="random prompts need vLLM's /tokenize and /detokenize; use --dataset instead")
    return resp.json()["prompt"]


def random_prompt(target: Target, length: int, rng: random.Random, tries: int = 4) -> tuple[str, int]:
    """A prompt text of `length` tokens (as the server counts them, without special tokens) and its length.

    As vLLM: cut the token ids to length, decode, and check that the text encodes back to that length
    (a cut between merged characters can re-encode differently); after a few tries the nearest is kept.
    """
    words = [rng.choice(WORDS) for _ in range(length)]
    # Each prompt starts with its own number, so no two share even their first tokens.
    text = f"{rng.randrange(10**9)} " + " ".join(words)
    ids = sync.tokenize(target, {"prompt": text, "add_special_tokens": False})
    while len(ids) < length:  # a tokenizer with multi-word tokens: add words until long enough
        text += " " + " ".join(rng.choice(WORDS) for _ in range(length))
        ids = sync.tokenize(target, {"prompt": text, "add_special_tokens": False})
    for _ in range(tries):
        text = detokenize(target, ids[:length])
        ids = sync.tokenize(target, {"prompt": text, "add_special_tokens": False})
        if len(ids) == length:
            break
        if len(ids) < length:  # too short after the round trip: pad with a word and cut again
            ids = sync.tokenize(target, {"prompt": text + " " + rng.choice(WORDS), "add_special_tokens": False})
    return text, len(ids)


class RandomLoad:
    """Requests of `input_len` prompt tokens (the template's own tokens included, as vLLM counts them) and
    exactly `output_len` output tokens; every prompt different (the seed and its index pick its words)."""

    def __init__(self, target: Target, input_len: int, output_len: int, *, seed: int = 0, workers: int = 16,
                 **sampling):
        sync.resolve_model(target)
        self.target, self.seed, self.workers = target, seed, workers
        self.length = input_len - special_tokens_added(target)
        if self.length < 1:
            raise UsageError(f"--input-len {input_len} leaves no room for a prompt", hint="use --input-len 2 or more")
        self.params = fixed_length_params(output_len, **sampling)
        self.taken = 0

    def describe(self) -> dict:
        return {"kind": "random", "prompt_text_tokens": self.length, "params": self.params}

    def take(self, count: int) -> list[Shape]:
        first = self.taken
        self.taken += count

        def one(i: int) -> Shape:
            text, n = random_prompt(self.target, self.length, random.Random(f"{self.seed}:{i}"))
            return Shape([{"role": "user", "content": text}], dict(self.params), n)

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(one, range(first, first + count)))


# ------------------------------------------------------------------------------------------ datasets
def questions(dataset: str) -> list[str]:
    """The questions of an eval set or file (r1cli.evaluation.datasets)."""
    from r1cli.evaluation.datasets import load_dataset

    return [p.question for p in load_dataset(dataset)]


class DatasetLoad:
    """R1 prompts from an eval set or file under the R1 rules, shuffled with the seed, in turn (repeated when
    more requests than questions are asked for: the prefix cache then serves the repeats' prompts)."""

    def __init__(self, target: Target, dataset: str, *, max_tokens: int | None = None, seed: int = 0, **sampling):
        self.dataset = dataset
        self.questions = questions(dataset)
        random.Random(seed).shuffle(self.questions)
        sync.resolve_model(target)
        # The served template decides the think prefill, once: it is the same for every question.
        _, extras = sync.fit_prompt(target, lambda prefill: rules.build_messages([], self.questions[0],
                                                                                   prefill_think=prefill))
        self.prefill = bool(extras)
        self.params = {**turn.Sampling(**sampling, max_tokens=max_tokens).params(), **extras}
        self.taken = 0

    def describe(self) -> dict:
        return {"kind": "dataset", "dataset": self.dataset, "questions": len(self.questions), "params": self.params}

    def take(self, count: int) -> list[Shape]:
        picked = [self.questions[(self.taken + i) % len(self.questions)] for i in range(count)]
        self.taken += count
        return [Shape(rules.build_messages([], q, prefill_think=self.prefill), dict(self.params)) for q in picked]
