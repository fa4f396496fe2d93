"""Which files of a model repo vLLM loads, and whether a folder holds them: the one rule for what `r1 pull`
fetches and for "ready to serve offline" (serve and its --dry-run, models, rm, doctor, eval).

vLLM's rule, as its DefaultModelLoader._prepare_weights applies it (vllm 0.32, model_loader/default_loader.py
and weight_utils.py) to a model r1 starts: r1 starts vLLM with HF_HUB_OFFLINE=1, where its `auto` load format
cannot list the repo (repo_utils.list_repo_files answers [] offline) and so is "hf": the first of
*.safetensors, *.bin, *.pt that matches files at the snapshot's top level; safetensors filtered by
model.safetensors.index.json's weight_map when there is one (filter_duplicate_safetensors_files: a
Mistral-style consolidated.safetensors beside the shards is not loaded), .bin and .pt without the
training files (filter_files_not_needed_for_inference).

Pure: no I/O but reading the folder a readiness check is asked about.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import NamedTuple

CONFIG = "config.json"
SAFE_INDEX = "model.safetensors.index.json"  # vLLM's SAFE_WEIGHTS_INDEX_NAME
# vLLM's patterns in its order of preference ("hf" load format, with fall_back_to_pt).
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")


class Reads(NamedTuple):
    """What one --load-format reads: the weight patterns, in order of preference; the index (or None)."""
    patterns: tuple[str, ...]
    index: str | None


# vLLM's --load-format: the weight patterns its loader globs, in its order of preference, and the index that
# filters safetensors (DefaultModelLoader._prepare_weights; Run:ai's loader reads every *.safetensors; the
# dummy loader no file: random weights). A format not named here reads files r1 cannot list (a tensorizer
# URI, a sharded state saved by vLLM): r1 pulls what the default format reads.
LOAD_FORMATS = {
    "hf": Reads(WEIGHT_PATTERNS, SAFE_INDEX),
    "safetensors": Reads(("*.safetensors",), SAFE_INDEX),
    "fastsafetensors": Reads(("*.safetensors",), SAFE_INDEX),
    "instanttensor": Reads(("*.safetensors",), SAFE_INDEX),
    "mistral": Reads(("consolidated*.safetensors",), "consolidated.safetensors.index.json"),
    "pt": Reads(("*.pt",), None),
    "npcache": Reads(("*.bin", "*.pt"), None),
    "runai_streamer": Reads(("*.safetensors",), None),
    "dummy": Reads((), None),
}
# vLLM's filter_files_not_needed_for_inference: what a trainer saves beside .bin/.pt weights.
TRAINING_WEIGHTS = ("training_args.bin", "optimizer.bin", "optimizer.pt", "scheduler.pt", "scaler.pt")
# What transformers' Trainer writes beside a checkpoint as JSON: never read to serve (trainer_state.json
# can be megabytes).
TRAINING_JSON = {"trainer_state.json", "all_results.json", "train_results.json", "eval_results.json"}
# What transformers and vLLM read beside the weights: config.json, generation_config.json, the tokenizer's
# files (tokenizer.json, tokenizer_config.json, special tokens, vocab/merges, sentencepiece models), chat
# templates and quantization configs, Mistral's params.json and tekken.json. Top level only, as the weights:
# subfolders hold other formats (Llama's original/). Mistral's tokenizer.model.v3 too.
METADATA_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken")
# A tokenizer transformers can load offline: one of these (tokenizer_config.json alone names a class, not
# a vocabulary).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tekken.json", "vocab.json", "vocab.txt", "tiktoken.model")
# Sharded weights name their count: model-00002-of-00004.safetensors.
_SHARD = re.compile(r"-(\d+)-of-(\d+)\.(safetensors|bin|pt)$")


def top_level(names) -> list[str]:
    return [n for n in names if "/" not in n]


def reads(load_format: str | None) -> Reads:
    """What vLLM's LOAD_FORMAT (None: its default) globs for weights, and the index it filters them by."""
    return LOAD_FORMATS.get(load_format or "hf", LOAD_FORMATS["hf"])


def weight_pattern(names, load_format: str | None = None) -> str | None:
    """The pattern vLLM loads weights by among NAMES (top level): the first of the format's that matches."""
    top = top_level(names)
    return next((p for p in reads(load_format).patterns if fnmatch.filter(top, p)), None)


def index_name(names, load_format: str | None = None) -> str | None:
    """The index whose weight_map vLLM filters by, when NAMES have one and the weights are safetensors."""
    pattern, index = weight_pattern(names, load_format), reads(load_format).index
    return index if pattern and pattern.endswith(".safetensors") and index in names else None


def weight_files(names, weight_map: dict | None = None, load_format: str | None = None) -> list[str]:
    """The weight files vLLM loads among NAMES, given the index's WEIGHT_MAP (None: no index)."""
    pattern = weight_pattern(names, load_format)
    if pattern is None:
        return []
    matched = sorted(fnmatch.filter(top_level(names), pattern))
    if pattern.endswith(".safetensors"):
        return sorted(set(weight_map.values())) if weight_map else matched
    return [n for n in matched if not n.endswith(TRAINING_WEIGHTS)]


def remote_code_files(config: dict | None) -> list[str]:
    """The *.py files config.json's auto_map names (trust_remote_code): 'modeling_x.Cls' -> modeling_x.py.
    A class of another repo ('org/repo--module.Cls') is not this repo's file."""
    found = set()
    for value in ((config or {}).get("auto_map") or {}).values():
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, str) and "--" not in ref and "." in ref:
                found.add(ref.rsplit(".", 1)[0].replace(".", "/") + ".py")
    return sorted(found)


def vllm_files(names, config: dict | None = None, weight_map: dict | None = None,
               load_format: str | None = None) -> list[str]:
    """The files of a repo (NAMES: its paths) that vLLM loads, in the order a pull fetches them: the small
    files, the weights, config.json last. CONFIG: config.json's content (its auto_map asks for *.py files);
    WEIGHT_MAP: the safetensors index's (index_name), None without one; LOAD_FORMAT: vLLM's --load-format."""
    names = list(names)
    top = top_level(names)
    index = index_name(names, load_format)
    meta = [n for n in top if (n.endswith(METADATA_SUFFIXES) or n.startswith("tokenizer.model")) and n not in TRAINING_JSON
            and not (n.endswith(".index.json") and n != index)]  # another format's index is no use
    code = [n for n in remote_code_files(config) if n in names]
    small = sorted(set(meta + code) - {CONFIG})
    return small + weight_files(names, weight_map, load_format) + ([CONFIG] if CONFIG in top else [])


def tokenizer_files(names, config: dict | None = None) -> list[str]:
    """The files a tokenizer-only repo (vLLM's --tokenizer) is loaded from: vllm_files without the weights
    and their index."""
    return [n for n in vllm_files(names, config) if not fnmatch.filter([n], weight_pattern(names) or "")
            and not n.endswith(".index.json")]


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def missing_to_serve(folder: Path, load_format: str | None = None) -> list[str]:
    """What FOLDER (a snapshot, or a model folder) lacks for vLLM to serve it offline; [] when nothing:
    config.json, a tokenizer, every weight file of the format vLLM picks (the index's weight_map where there is
    one; each shard of a -NNNNN-of-NNNNN set; else the single file; none for --load-format dummy) and the *.py
    files config's auto_map names. A link to a blob that is gone counts as missing."""
    try:
        names = [p.name for p in folder.iterdir() if p.is_file()]
    except OSError:
        return [CONFIG]
    if CONFIG not in names:
        return [CONFIG]
    missing = []
    config = _read_json(folder / CONFIG)
    if config is None:
        missing.append(f"{CONFIG} (unreadable)")
    if not any(t in names for t in TOKENIZER_FILES):
        missing.append("a tokenizer (" + " or ".join(TOKENIZER_FILES[:2]) + ")")
    wanted: set[str] = set()
    index = index_name(names, load_format)
    if index is not None:
        weight_map = (_read_json(folder / index) or {}).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            missing.append(f"{index} (unreadable)")
        else:
            wanted |= set(weight_map.values())
    chosen = weight_files(names, None, load_format)
    patterns = reads(load_format).patterns
    if patterns and not chosen and not wanted:
        missing.append("weights (" + ", ".join(patterns) + ")")
    for name in chosen:
        shard = _SHARD.search(name)
        if shard and index is None:  # a set that names its count: every member
            width, total = len(shard.group(1)), int(shard.group(2))
            stem = name[:shard.start()]
            wanted |= {f"{stem}-{i:0{width}d}-of-{shard.group(2)}.{shard.group(3)}" for i in range(1, total + 1)}
    wanted |= set(remote_code_files(config))
    missing += sorted(n for n in wanted if n not in names)
    return missing


def missing_for_tokenizer(folder: Path) -> list[str]:
    """What FOLDER lacks to load a tokenizer from (vLLM's --tokenizer): one of TOKENIZER_FILES."""
    if any((folder / t).is_file() for t in TOKENIZER_FILES):
        return []
    return ["a tokenizer (" + " or ".join(TOKENIZER_FILES[:2]) + ")"]


def ready_to_serve(folder: Path) -> bool:
    return not missing_to_serve(folder)
