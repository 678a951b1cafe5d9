"""Shared fixtures: tiny random models for unit tests, the embedded default for
integration tests. Nothing here reaches the Hugging Face hub."""

from __future__ import annotations

import os
import shutil
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

EOS = "<|endoftext|>"

SONNET = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
"""


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A real byte-level tokenizer (256 bytes + EOS), built offline."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab[EOS] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, model_max_length=4096
    )


def tiny_llama(vocab_size: int = 257, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer random Llama, small enough for unit tests."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: small models run several times faster so
    when the cores are shared (thread barriers wait on preempted peers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A tiny random Llama and its tokenizer saved as an ordinary local model dir."""
    path = tmp_path_factory.mktemp("tiny-lm")
    tiny_llama().save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory) -> Path:
    """Twelve small text files: eleven train on, the tenth is held out."""
    path = tmp_path_factory.mktemp("corpus")
    for i in range(12):
        (path / f"doc{i:02d}.txt").write_text(f"Document {i}.\n" + SONNET * 6)
    return path


@pytest.fixture(scope="session")
def embedded_run(tmp_path_factory) -> Path:
    """A small run of all three architectures at layers.6.mlp of the embedded
    default (SmolLM2-135M-Instruct on Shakespeare), trained once per session."""
    from transcoders.training import TrainingConfig, train

    out = tmp_path_factory.mktemp("embedded-run") / "run"
    train(
        TrainingConfig(
            out=str(out),
            hookpoints=["layers.6.mlp"],
            k=16,
            expansion_factor=4,
            tokens=16 * 128 * 6,
            eval_tokens=8 * 128,
            ctx_len=128,
            batch_size=16,
            save_every=1000,
            device="cpu",
        )
    )
    return out


@pytest.fixture(scope="session")
def smoke_table1(tmp_path_factory) -> tuple[dict, Path]:
    """The smoke preset's Table 1, run once per session: (results, work folder)."""
    from reproductions import presets, table1

    root = tmp_path_factory.mktemp("smoke-table1")
    return table1.run(presets.get("smoke"), root / "out", root / "work"), root / "work"


@pytest.fixture
def shared_dir():
    """A temporary folder `nobody` may enter (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="transcoders-probe-"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path)
