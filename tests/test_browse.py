"""The latent browser, built from a tiny autointerp run: its files and data, and the
pages in headless Chromium (overview, filtered list, token highlighting that matches
the latent cache)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file

from tests.autointerp.tiny_autointerp import tiny_options, tiny_world
from transcoders.autointerp import pipeline
from transcoders.autointerp.config import AutointerpConfig
from transcoders.browse.site import BrowseError, build_site
from transcoders.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install -y chromium)")
HP = "layers.1.mlp"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run with autointerp results (top-tokens explainer, embedding scorer)."""
    root = tmp_path_factory.mktemp("browse")
    run = tiny_world(root)
    cfg = AutointerpConfig(**tiny_options(root, run / "autointerp", explainer="top-tokens", scorers=["embedding"]))
    pipeline.run_autointerp(run, cfg)
    return run


@pytest.fixture(scope="module")
def site(run):
    return build_site(run)


def data(path: Path):
    """The value a data file passes to its callback."""
    text = path.read_text()
    return json.loads(text[text.index("(") + 1 : text.rindex(")")])


def test_site_holds_every_sampled_latent(run, site):
    assert site == run / "autointerp" / "browser"
    latents = pd.read_csv(run / "autointerp" / "latents.csv")
    rows = data(site / "data" / "latents.js")["latents"]
    assert sorted((r["arch"], r["latent"]) for r in rows) == sorted(
        set(zip(latents["architecture"], latents["latent"])))
    for r in rows:
        d = data(site / "data" / r["arch"] / HP / f"{r['latent']}.js")
        expected = json.loads((run / "autointerp" / r["arch"] / "explanations" / f"{HP}_latent{r['latent']}.txt").read_text())
        assert d["explanation"] == expected
        assert [s["scorer"] for s in d["scores"]] == ["embedding"] and d["scores"][0]["shuffled"] is not None
        train, test, negatives = (s["examples"] for s in d["sections"])
        # tiny_options: 5 explainer examples, 5 test examples, 5 non-activating, 16-token windows
        assert len(train) == 5 and len(test) == 5 and len(negatives) == 5
        assert all(len(e["tokens"]) == len(e["acts"]) == 16 for e in train + test + negatives)
        assert all(max(e["acts"]) > 0 for e in train + test) and all(max(e["acts"]) == 0 for e in negatives)
        # The scorer's own verdict on each example it saw, matched from its score list.
        # A window the scorer saw twice (Delphi can draw the same one again) has both.
        texts = ["".join(e["tokens"]) for e in test + negatives]
        for e, text in zip(test + negatives, texts):
            marks = e["marks"]["embedding"]
            assert len(marks) == texts.count(text) and all(isinstance(m, float) for m in marks)
        assert not any(e["marks"] for e in train)
        assert len(d["logits"]["top"]) == len(d["logits"]["bottom"]) == 10
        assert d["logits"]["top"][0][1] >= d["logits"]["bottom"][0][1]
        assert sum(d["histogram"]["counts"]) == r["firing_count"]
    for name in ("index.html", "latents.html", "latent.html", "browse.js", "browse.css"):
        assert (site / name).is_file()
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert size < 1_000_000


def test_logit_effects_are_the_unembedded_decoder_row(run, site):
    from transformers import AutoModelForCausalLM

    from transcoders import checkpoints

    ckpt = next(c for c in checkpoints.find(run) if c.architecture.name == "transcoder")
    latent = data(site / "data" / "latents.js")["latents"][-1]["latent"]
    effects = AutoModelForCausalLM.from_pretrained(run.parent / "model").lm_head.weight @ ckpt.load_saved().W_dec[latent]
    d = data(site / "data" / "transcoder" / HP / f"{latent}.js")
    assert [v for _, v in d["logits"]["top"]] == pytest.approx(effects.topk(10).values.tolist(), abs=1e-3)
    assert [v for _, v in d["logits"]["bottom"]] == pytest.approx((-effects).topk(10).values.neg().tolist(), abs=1e-3)


def test_cli_writes_where_asked(run, tmp_path):
    result = CliRunner().invoke(main, ["browse", str(run), "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "site" / "index.html").is_file()
    with pytest.raises(BrowseError):
        build_site(tmp_path / "site")


def test_a_rebuild_drops_latents_of_an_earlier_build(run, site, tmp_path):
    out = tmp_path / "site"
    build_site(run, out=out)
    stale = out / "data" / "sae" / HP / "999999.js"
    stale.write_text("browseLatent({});\n")
    mine = out / "data" / "notes.txt"
    mine.write_text("kept")
    build_site(run, out=out)
    assert not stale.exists() and mine.read_text() == "kept"
    assert sorted(p.name for p in (out / "data").rglob("*.js")) == sorted(p.name for p in (site / "data").rglob("*.js"))


# ---- in headless Chromium ----


def chromium(url: str, profile: Path) -> tuple[str, str]:
    """The page's DOM after its scripts ran, and Chromium's log (console included)."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]


class Elements(HTMLParser):
    """Every element's tag and attributes, with its text for the few we read."""

    def __init__(self, dom: str):
        super().__init__()
        self.found: list[dict] = []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        self.found.append({"tag": tag, **dict(attrs)})

    def having(self, key: str, value: str | None = None) -> list[dict]:
        return [e for e in self.found if key in e and (value is None or value in e[key].split())]


@needs_chromium
def test_overview_renders_without_console_errors(site, tmp_path):
    dom, log = chromium((site / "index.html").as_uri(), tmp_path)
    assert console_errors(log) == []
    page = Elements(dom)
    assert sorted(e["data-arch"] for e in page.having("data-hookpoint")) == ["sae", "transcoder"]
    assert len([e for e in page.found if e["tag"] == "svg"]) == 4  # frequency + scores, per coder


@needs_chromium
def test_latent_list_applies_the_filters_in_its_address(site, tmp_path):
    rows = data(site / "data" / "latents.js")["latents"]
    word = re.findall(r'"(w\d+)"', rows[0]["explanation"])[0]
    dom, log = chromium((site / "latents.html").as_uri() + f"#q={word}&min=0.5&scorer=embedding", tmp_path)
    assert console_errors(log) == []
    shown = sorted((e["data-arch"], int(e["data-latent"])) for e in Elements(dom).having("class", "latent-row"))
    expected = sorted((r["arch"], r["latent"]) for r in rows
                      if f'"{word}"' in r["explanation"] and r["scores"]["embedding"] >= 0.5)
    assert shown == expected and len(shown) < len(rows)
    # Unfiltered, every latent is listed.
    dom, _ = chromium((site / "latents.html").as_uri(), tmp_path)
    assert len(Elements(dom).having("class", "latent-row")) == len(rows)


@needs_chromium
def test_latent_page_highlights_tokens_by_their_cached_activation(run, site, tmp_path):
    latent = data(site / "data" / "latents.js")["latents"][0]["latent"]
    dom, log = chromium((site / "latent.html").as_uri() + f"#sae/{HP}/{latent}", tmp_path)
    assert console_errors(log) == []

    folder = run / "autointerp" / "sae" / "latents" / HP
    split = next(f for f in folder.glob("*.safetensors")
                 if int(f.stem.split("_")[0]) <= latent <= int(f.stem.split("_")[1]))
    cached = load_file(split)
    start = int(split.stem.split("_")[0])
    width = 16  # tiny_options' example_ctx_len
    dense = np.zeros(cached["tokens"].size, dtype=np.float32)
    locs = cached["locations"].astype(np.int64)
    mine = locs[:, 2] + start == latent
    dense[locs[mine, 0] * cached["tokens"].shape[1] + locs[mine, 1]] = cached["activations"][mine]
    windows, acts = cached["tokens"].reshape(-1, width), dense.reshape(-1, width)
    peak = dense.max()

    # Walk the DOM in order: each example's token spans follow its div.
    examples, current = [], None
    for e in Elements(dom).found:
        if "data-ids" in e:
            current = {"ids": list(map(int, e["data-ids"].split())), "acts": [], "alpha": []}
            examples.append(current)
        elif "data-act" in e:
            current["acts"].append(float(e["data-act"]))
            current["alpha"].append(float(e["data-alpha"]))
    assert len(examples) == 15
    for ex in examples:
        match = np.flatnonzero((windows == np.array(ex["ids"])).all(axis=1))
        assert len(match) >= 1, "an example is not a window of the cache"
        assert ex["acts"] == pytest.approx(acts[match[0]].tolist(), abs=1e-3)
        assert ex["alpha"] == pytest.approx((acts[match[0]] / peak).tolist(), abs=2e-3)
    assert sum(a > 0 for ex in examples for a in ex["alpha"]) >= 10
