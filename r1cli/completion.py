"""Shell completion for r1's arguments: what a value may be, offered instead of file names.

Each function takes what the user typed so far (`incomplete`) and returns the matching values; they are
given to Typer as `autocompletion=` on the declarations (serve's and doctor's MODEL and --quant, eval's
DATASET, rm's cached MODEL). Only the tables are read: nothing is imported that completion would wait for."""

from __future__ import annotations


def _matching(values, incomplete: str) -> list[str]:
    return [v for v in values if v.startswith(incomplete or "")]


def models(incomplete: str = "") -> list[str]:
    """The presets (`1.5b` ... `70b`) and `demo`; a Hugging Face id or a folder is typed in full."""
    from r1cli import config

    return _matching([*config.PRESETS, "demo"], incomplete)


def cached_models(incomplete: str = "") -> list[str]:
    """What `r1 rm` can delete: the model repos in the Hugging Face cache (huggingface_hub's scan), and the
    preset key of each that is a preset's; not the presets that are not there."""
    from r1cli import config
    from r1cli.hub import cache

    found = cache.scan()
    repos = sorted((r.repo_id for r in found.repos if r.repo_type == "model"), key=str.lower) if found else []
    keys = [preset[0] for preset in map(config.find_preset, repos) if preset is not None and preset[2] is None]
    return _matching([*keys, *repos], incomplete)


def quants(incomplete: str = "") -> list[str]:
    """--quant's values: awq, awq_marlin, gptq, gptq_marlin, fp8, none."""
    from r1cli import config

    return _matching(config.QUANT_CHOICES, incomplete)


def datasets(incomplete: str = "") -> list[str]:
    """The evaluation sets `r1 eval` and `r1 bench --dataset` know (r1cli/evaluation/sets.py)."""
    from r1cli.evaluation import sets

    return _matching(sets.NAMES, incomplete)
