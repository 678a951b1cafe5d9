"""Fixtures for `--check` tests, offline, shaped like the hub repos the presets name: model repos holding the models' real
config.json (from the presets' `model_config`) in a local HF cache, and a copy of
the EleutherAI/SmolLM2-135M-10B dataset repo (only a `train` split; its card says
how many rows; a sample of documents as parquet)."""

from __future__ import annotations

import dataclasses
import random

import huggingface_hub.constants
import pytest
from datasets import Dataset
from transformers import AutoConfig

from conftest import tiny_tokenizer
from reproductions import presets

DATASET_ROWS = 10_000_000
"""Rows the fixture's dataset card declares; with ~1,000-token documents, ~10B tokens
like the real corpus."""

CARD = f"""---
dataset_info:
  features:
  - name: text
    dtype: string
  splits:
  - name: train
    num_examples: {DATASET_ROWS}
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
---
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A local HF cache with the GPU presets' model repos (config + a tokenizer)."""
    cache = tmp_path_factory.mktemp("hub")
    for preset in presets.PRESETS.values():
        if not preset.model_config or preset.model == "embedded":
            continue
        root = cache / f"models--{preset.model.replace('/', '--')}"
        snapshot = root / "snapshots" / ("0" * 40)
        AutoConfig.for_model(**preset.model_config).save_pretrained(snapshot)
        tiny_tokenizer().save_pretrained(snapshot)
        (root / "refs").mkdir(parents=True)
        (root / "refs" / "main").write_text("0" * 40)
    return cache


@pytest.fixture(scope="module")
def smollm_corpus(tmp_path_factory):
    """The dataset repo's layout: README card, data/train-*.parquet, no eval split."""
    repo = tmp_path_factory.mktemp("SmolLM2-135M-10B")
    rng = random.Random(0)
    words = "the of and a to in is that for it as was with be by on".split()
    docs = [" ".join(rng.choice(words) for _ in range(300)) for _ in range(80)]
    (repo / "data").mkdir()
    Dataset.from_dict({"text": docs}).to_parquet(repo / "data" / "train-00000-of-00001.parquet")
    (repo / "README.md").write_text(CARD)
    return repo


@pytest.fixture
def offline_hub(hub, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def as_fixture(preset, corpus):
    """The preset with its hub dataset id pointed at the local copy of that repo."""
    if preset.dataset == "embedded":
        return preset
    assert preset.dataset == "EleutherAI/SmolLM2-135M-10B"
    return dataclasses.replace(preset, dataset=str(corpus))


