"""Which files vLLM loads (hub/files.py), on the presets' file lists (tests/data/hub/preset-repo-files.json:
where they come from is in the file) and on the layouts that fooled a choice by suffix; and the one rule for
"ready to serve offline" on snapshots as pulls, vLLM's own download and AutoConfig leave them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from r1cli import config
from r1cli.hub import files

pytestmark = pytest.mark.timeout(30)

TREES = json.loads((Path(__file__).parents[1] / "data" / "hub" / "preset-repo-files.json").read_text())
PRESET_REPOS = sorted({p.repo for p in config.PRESETS.values()}
                      | {c.repo for p in config.PRESETS.values() for c in p.quantized.values()})


def shards_of(names):
    return sorted(n for n in names if n.endswith(".safetensors"))


def test_the_data_covers_every_preset_and_checkpoint():
    assert set(PRESET_REPOS) <= set(TREES)


@pytest.mark.parametrize("repo", PRESET_REPOS)
def test_a_preset_gets_its_config_tokenizer_and_every_shard_and_nothing_else(repo):
    names = TREES[repo]
    weights = shards_of(names)
    index = {"weight_map": {f"w{i}": w for i, w in enumerate(weights)}} if len(weights) > 1 else None
    chosen = files.vllm_files(names, {"architectures": ["X"]}, (index or {}).get("weight_map"))
    assert chosen[-1] == "config.json"  # last: a pull cut short leaves no config.json
    assert chosen[-1 - len(weights):-1] == weights
    assert {"tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= set(chosen)
    assert ("model.safetensors.index.json" in chosen) == (index is not None)
    assert not {"README.md", ".gitattributes", "LICENSE", "figures/benchmark.jpg", "quant_log.csv"} & set(chosen)
    if "quantize_config.json" in names:
        assert "quantize_config.json" in chosen


def test_mistral_style_repo_gets_the_indexed_shards_not_consolidated():
    # mistralai/Mistral-7B-Instruct-v0.3's layout: consolidated.safetensors beside the HF shards. vLLM started
    # offline loads by the "hf" format: *.safetensors filtered by the index's weight_map.
    names = ["config.json", "consolidated.safetensors", "generation_config.json", "model-00001-of-00003.safetensors",
             "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors", "model.safetensors.index.json",
             "params.json", "special_tokens_map.json", "tokenizer.json", "tokenizer.model", "tokenizer.model.v3",
             "tokenizer_config.json", "README.md"]
    weight_map = {"a": "model-00001-of-00003.safetensors", "b": "model-00002-of-00003.safetensors",
                  "c": "model-00003-of-00003.safetensors"}
    chosen = files.vllm_files(names, {}, weight_map)
    assert "consolidated.safetensors" not in chosen
    assert shards_of(chosen) == sorted(weight_map.values())
    assert {"params.json", "tokenizer.model", "tokenizer.model.v3"} <= set(chosen)


# --load-format, as vLLM 0.32's loaders glob (DefaultModelLoader._prepare_weights, the Run:ai and dummy loaders)
MISTRAL_NAMES = ["config.json", "consolidated.safetensors", "consolidated.safetensors.index.json",
                 "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
                 "params.json", "tokenizer.json", "tekken.json", "pytorch_model.bin", "model.pt"]
MISTRAL_INDEXES = {"model.safetensors.index.json": {"a": "model-00001-of-00002.safetensors",
                                                    "b": "model-00002-of-00002.safetensors"},
                   "consolidated.safetensors.index.json": {"a": "consolidated.safetensors"}}


@pytest.mark.parametrize("load_format, index, weights", [
    (None, "model.safetensors.index.json", ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
    ("auto", "model.safetensors.index.json", ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
    ("safetensors", "model.safetensors.index.json",
     ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
    ("mistral", "consolidated.safetensors.index.json", ["consolidated.safetensors"]),
    ("runai_streamer", None, ["consolidated.safetensors", "model-00001-of-00002.safetensors",
                              "model-00002-of-00002.safetensors"]),  # every *.safetensors: no index filter
    ("npcache", None, ["pytorch_model.bin"]),
    ("pt", None, ["model.pt"]),
    ("dummy", None, []),  # random weights: config and tokenizer alone
    ("tensorizer", "model.safetensors.index.json",  # files r1 cannot list: what the default reads
     ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
])
def test_load_format_picks_the_weights_vllm_reads(load_format, index, weights):
    assert files.index_name(MISTRAL_NAMES, load_format) == index
    chosen = files.vllm_files(MISTRAL_NAMES, {}, MISTRAL_INDEXES.get(index), load_format)
    assert [n for n in chosen if n.endswith((".safetensors", ".bin", ".pt"))] == weights
    assert {"config.json", "tokenizer.json", "tekken.json", "params.json"} <= set(chosen)
    assert ("consolidated.safetensors.index.json" in chosen) == (load_format == "mistral")


def test_a_bin_repo_gets_its_weights_without_the_training_files():
    names = ["config.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
             "pytorch_model.bin.index.json", "optimizer.bin", "training_args.bin", "scheduler.pt",
             "trainer_state.json", "all_results.json", "tokenizer.json", "vocab.json", "merges.txt"]
    assert files.vllm_files(names) == ["merges.txt", "tokenizer.json", "vocab.json", "pytorch_model-00001-of-00002.bin",
                                       "pytorch_model-00002-of-00002.bin", "config.json"]


def test_safetensors_win_over_bin_and_the_other_formats_index_stays():
    names = ["config.json", "model.safetensors", "pytorch_model.bin", "pytorch_model.bin.index.json", "tokenizer.json",
             "original/consolidated.00.pth", "original/params.json"]
    assert files.vllm_files(names) == ["tokenizer.json", "model.safetensors", "config.json"]


def test_remote_code_gets_the_py_files_auto_map_names():
    names = ["config.json", "configuration_deepseek.py", "modeling_deepseek.py", "setup.py", "model.safetensors",
             "tokenizer.json", "tokenization_x.py"]
    cfg = {"auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config",
                        "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM",
                        "AutoTokenizer": ["tokenization_x.XTokenizer", None],
                        "AutoModel": "other/repo--modeling_other.Other"}}
    assert files.vllm_files(names, cfg) == ["configuration_deepseek.py", "modeling_deepseek.py", "tokenization_x.py",
                                            "tokenizer.json", "model.safetensors", "config.json"]
    assert files.vllm_files(names, {}) == ["tokenizer.json", "model.safetensors", "config.json"]


# ------------------------------------------------------------------------------------------ ready to serve
def _snapshot(tmp_path: Path, names: dict[str, str | dict]) -> Path:
    folder = tmp_path / "snap"
    folder.mkdir()
    for name, content in names.items():
        (folder / name).write_text(json.dumps(content) if isinstance(content, dict) else content)
    return folder


SHARDS = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}


@pytest.mark.parametrize("layout, missing", [
    # What AutoConfig/AutoTokenizer, or a vLLM start cut short, leave: config.json alone.
    ({"config.json": {}}, ["a tokenizer (tokenizer.json or tokenizer.model)", "weights (*.safetensors, *.bin, *.pt)"]),
    ({"config.json": {}, "tokenizer.json": "{}"}, ["weights (*.safetensors, *.bin, *.pt)"]),
    ({"tokenizer.json": "{}", "model.safetensors": "x"}, ["config.json"]),
    ({"config.json": {}, "tokenizer.json": "{}", "model.safetensors": "x"}, []),
    ({"config.json": {}, "tokenizer.json": "{}", "model.safetensors.index.json": {"weight_map": SHARDS},
      SHARDS["a"]: "x"}, [SHARDS["b"]]),
    ({"config.json": {}, "tokenizer.json": "{}", "model.safetensors.index.json": {"weight_map": SHARDS},
      SHARDS["a"]: "x", SHARDS["b"]: "x", "consolidated.safetensors": "x"}, []),
    ({"config.json": {}, "tokenizer.json": "{}", SHARDS["b"]: "x"}, [SHARDS["a"]]),  # no index: the set names its count
    ({"config.json": {}, "tokenizer.json": "{}", "model.safetensors.index.json": "not json", SHARDS["a"]: "x"},
     ["model.safetensors.index.json (unreadable)"]),
    ({"config.json": {"auto_map": {"AutoModel": "modeling_x.X"}}, "tokenizer.json": "{}", "model.safetensors": "x"},
     ["modeling_x.py"]),
    ({"config.json": {}, "tokenizer.model": "x", "pytorch_model.bin": "x", "training_args.bin": "x"}, []),
])
def test_missing_to_serve(tmp_path, layout, missing):
    assert files.missing_to_serve(_snapshot(tmp_path, layout)) == missing


@pytest.mark.parametrize("load_format, missing", [
    (None, ["weights (*.safetensors, *.bin, *.pt)"]),
    ("safetensors", ["weights (*.safetensors)"]),
    ("dummy", []),  # vLLM makes random weights: what AutoConfig and AutoTokenizer left is enough
])
def test_missing_to_serve_with_a_load_format(tmp_path, load_format, missing):
    folder = _snapshot(tmp_path, {"config.json": {}, "tokenizer.json": "{}", "pytorch_model.bin": "x"})
    if load_format != "safetensors":
        (folder / "pytorch_model.bin").unlink()
    assert files.missing_to_serve(folder, load_format) == missing


def test_a_link_to_a_blob_that_is_gone_is_missing(tmp_path):
    folder = _snapshot(tmp_path, {"config.json": {}, "tokenizer.json": "{}"})
    os.symlink("../blobs/gone", folder / "model.safetensors")
    assert files.missing_to_serve(folder) == ["weights (*.safetensors, *.bin, *.pt)"]
