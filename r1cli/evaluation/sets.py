"""The named evaluation sets: the one table that eval, bench, --help, the completions and the README read.

Light on purpose (no I/O, no heavy imports): the option declarations import it at every start."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubSet:
    """A public set on the Hugging Face Hub, pinned to one commit so every run reads the same bytes."""

    repo: str
    revision: str  # a full commit sha
    filename: str
    description: str


# Revisions read from the repositories' commit histories; the files are what evaluation harnesses use.
HUB_SETS: dict[str, HubSet] = {
    "aime24": HubSet("HuggingFaceH4/aime_2024", "2fe88a2f1091d5048c0f36abc874fb997b3dd99a",
                     "data/train-00000-of-00001.parquet", "AIME 2024, 30 problems"),
    "math500": HubSet("HuggingFaceH4/MATH-500", "6e4ed1a2a79af7d8630a6b768ec859cb5af4d3be",
                      "test.jsonl", "MATH-500 (OpenAI's subset of MATH test), 500 problems"),
    "gsm8k": HubSet("openai/gsm8k", "740312add88f781978c0658806c59bc2815b9866",
                    "main/test-00000-of-00001.parquet", "GSM8K test, 1,319 problems"),
    "amc23": HubSet("math-ai/amc23", "80815d37005feb82cd7f8fbc6901d5d3eff43057",
                    "test-00000-of-00001.parquet", "AMC 2023 (12A/12B), 40 problems"),
}
BUILTIN = ("demo",)
NAMES = (*BUILTIN, *HUB_SETS)  # what `r1 eval NAME` and `r1 bench --dataset NAME` accept


def names_text() -> str:
    """"demo, aime24, math500, gsm8k, amc23": the names as help texts list them."""
    return ", ".join(NAMES)
