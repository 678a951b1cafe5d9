"""Build the latent browser: a static site (HTML, CSS, JS, and data as JS files) that
opens from disk, for every architecture and hookpoint with autointerp results.

Everything shown is read back from what autointerp and evaluation wrote: latents.csv and
summary.json, the explanations and score lists, the latent cache (through
autointerp's own `latent_records`, so examples are the windows Delphi's explainer and
scorers saw), and RUN/evaluation.json when present. Only the logit panel computes: the
subject model's unembedding applied to each latent's decoder row.

Layout of `out`:

    index.html                 overview: per architecture score and frequency
                               histograms, the Table 1 row
    latents.html               sortable, filterable latent list (filters in the URL hash)
    latent.html                one latent (`latent.html#<arch>/<hookpoint>/<latent>`)
    browse.js, browse.css      the page code
    data/latents.js            the list's rows
    data/<arch>/<hookpoint>/<latent>.js   one latent's examples, loaded by latent.html

Data files are JavaScript calling a callback rather than JSON because browsers refuse
`fetch` of file:// URLs; a `<script>` tag loads them from disk.
"""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file

from .. import checkpoints, formatting, run
from ..atomic import write_text
from ..autointerp import cache
from ..autointerp.config import AutointerpConfig
from ..autointerp.sampling import latent_counts, latent_records, load_tokenizer
from ..autointerp.scores import DONORS_FILE, SHUFFLED
from ..autointerp.settings import SETTINGS_FILE
from ..autointerp.state import read_json
from ..autointerp.summary import HEADLINE, LATENTS_CSV, SUMMARY_JSON, interval
from ..autointerp.tokenizer_compat import PerTokenDecoding
from ..errors import UserError
from ..evaluation.evaluate import RESULTS_JSON

LOGIT_TOKENS = 10
HIST_BINS = 20
STATIC = ("browse.js", "browse.css")


class BrowseError(UserError):
    """The run or its autointerp folder cannot be browsed."""


def build_site(run_dir: str | Path, autointerp_dir: str | Path | None = None,
               out: str | Path | None = None, device: str = "cpu") -> Path:
    """Write the browser for `run_dir`'s autointerp results (default
    `RUN/autointerp`) to `out` (default `<autointerp>/browser`); returns `out`."""
    run_dir = Path(run_dir)
    results = Path(autointerp_dir) if autointerp_dir else run.autointerp_dir(run_dir)
    summary = read_json(results / SUMMARY_JSON, dict, "not browsing it")
    if summary is None or not (results / LATENTS_CSV).is_file():
        others = sorted(p.parent.name for p in run_dir.glob(f"autointerp*/{SUMMARY_JSON}"))
        found = f" ({run_dir} holds {', '.join(others)})" if others and not autointerp_dir else ""
        raise BrowseError(
            f"{results} holds no finished autointerp results (summary.json and latents.csv); "
            f"run `transcoders autointerp` first, or pass --autointerp with its --out folder{found}"
        )
    out = Path(out) if out else results / "browser"
    fields = {f.name for f in dataclasses.fields(AutointerpConfig)}
    cfg = AutointerpConfig(**{k: v for k, v in summary.get("config", {}).items() if k in fields})
    settings = read_json(results / SETTINGS_FILE, dict, "using the summary's config") or {}
    model_name = settings.get("model") or cfg.model or "embedded"
    df = pd.read_csv(results / LATENTS_CSV)
    evaluation = read_json(run_dir / RESULTS_JSON, dict, "leaving FVU, ΔCE and KL out") or {}

    try:
        ckpts = {(c.architecture.name, c.hookpoint): c for c in checkpoints.find(run_dir, cfg.reads)}
    except checkpoints.CheckpointError as err:
        raise BrowseError(str(err)) from err
    groups = list(df.groupby(["architecture", "hookpoint"], sort=True))
    for (arch, hp), _ in groups:
        if (arch, hp) not in ckpts:
            raise BrowseError(
                f"{results} has results for {arch}/{hp} but {run_dir} has no such coder: "
                "pass the run that autointerp read, or its own --autointerp folder")
    tokenizer = load_tokenizer(model_name)
    unembed = _unembedding(model_name, device)

    rows, overviews = [], []
    for (arch, hp), group in groups:
        rows += _hookpoint(ckpts[arch, hp], group, results, out, cfg, tokenizer, unembed)
        overviews.append(_overview(arch, hp, group, results, cfg, summary, evaluation))

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("transcoders.browse", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined,
    )
    title = f"Latents of {run_dir.name}"
    write_text(out / "index.html", env.get_template("overview.html").render(
        title=title, overviews=overviews, run=str(run_dir), results=str(results)))
    write_text(out / "latents.html", env.get_template("latents.html").render(title=title))
    write_text(out / "latent.html", env.get_template("latent.html").render(title=title))
    scorers = sorted(df["scorer"].dropna().unique().tolist()) if "scorer" in df else []
    _write_data(out / "data" / "latents.js", "browseLatents", {"scorers": scorers, "latents": rows})
    for name in STATIC:
        write_text(out / name, (resources.files("transcoders.browse") / "templates" / name).read_text())
    _remove_stale(out, {out / "data" / r["arch"] / _safe(r["hookpoint"]) / f"{r['latent']}.js" for r in rows})
    return out


def _remove_stale(out: Path, written: set[Path]) -> None:
    """Delete latent data files an earlier build left in `out` (another sample or
    run), so the folder holds only this build's latents; other files are kept."""
    for path in (out / "data").glob("*/*/*.js"):
        if path.stem.isdigit() and path not in written:
            path.unlink()


def _unembedding(model_name: str, device: str) -> torch.Tensor:
    """The subject model's unembedding matrix (vocab × d_model)."""
    from ..data import load_model

    model, _ = load_model(model_name, device=device)
    return model.get_output_embeddings().weight.detach().float()


def _hookpoint(ckpt, group: pd.DataFrame, results: Path, out: Path, cfg, tokenizer, unembed) -> list[dict]:
    """Write the data file of every latent of one coder; returns the list rows."""
    arch, hp = ckpt.architecture.name, ckpt.hookpoint
    sample = np.sort(group["latent"].unique())
    records = {r.latent.latent_index: r for r in latent_records(ckpt, results, cfg, tokenizer, sample)}
    activations = _cached_activations(cache.latents_dir(results, arch) / hp, sample)
    decoding = PerTokenDecoding(tokenizer)
    coder = ckpt.load_saved("cpu")
    w_dec = coder.W_dec.detach().float()[torch.from_numpy(sample)]
    effects = w_dec.to(unembed.device) @ unembed.T
    donors = read_json(results / arch / DONORS_FILE, dict, "leaving the donors out") or {}

    rows = []
    for i, latent in enumerate(sample.tolist()):
        g = group[group["latent"] == latent]
        first = g.iloc[0]
        scores = _scores(g)
        row = {
            "arch": arch, "hookpoint": hp, "latent": latent,
            "explanation": first["explanation"] if isinstance(first["explanation"], str) else None,
            "frequency": float(first["frequency"]), "firing_count": int(first["firing_count"]),
            "scores": {s["scorer"]: s["real"] for s in scores},
            "shuffled": {s["scorer"]: s["shuffled"] for s in scores},
        }
        rows.append(row)
        acts = activations[latent]
        top = effects[i].topk(LOGIT_TOKENS)
        bottom = (-effects[i]).topk(LOGIT_TOKENS)
        marks = _example_marks(results / arch / "scores", _file_name(hp, latent))
        record = records.get(latent)
        latent_data = {
            **row, "scores": scores,
            "donor": donors.get(_file_name(hp, latent)),
            "max_activation": float(acts.max()) if acts.size else 0.0,
            "histogram": _histogram(acts, HIST_BINS),
            "logits": {
                "top": _token_values(decoding, top.indices, top.values),
                "bottom": _token_values(decoding, bottom.indices, -bottom.values),
            },
            "sections": _sections(record, decoding, marks) if record else [],
        }
        _write_data(out / "data" / arch / _safe(hp) / f"{latent}.js", "browseLatent", latent_data)
    return rows


def _file_name(hp: str, latent: int) -> str:
    """The stem autointerp gives this latent's explanation and score files."""
    return f"{_safe(hp)}_latent{latent}"


def _safe(hp: str) -> str:
    return hp.replace("/", "--")


def _scores(g: pd.DataFrame) -> list[dict]:
    """Headline metric per scorer, real and shuffled."""
    out = []
    if "scorer" not in g:
        return out
    for scorer, s in g[g["scorer"].notna()].groupby("scorer", sort=True):
        metric = HEADLINE[scorer]
        value = {bool(k): _number(v[metric].iloc[0]) for k, v in s.groupby(s["shuffled"].astype(bool))}
        out.append({"scorer": scorer, "metric": metric, "real": value.get(False), "shuffled": value.get(True)})
    return out


def _number(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)


def _cached_activations(folder: Path, latents: np.ndarray) -> dict[int, np.ndarray]:
    """Every nonzero activation in the cache of each of `latents`."""
    found = {int(i): np.zeros(0, dtype=np.float32) for i in latents}
    for file in folder.glob("*.safetensors"):
        start, end = map(int, file.stem.split("_"))
        wanted = [i for i in found if start <= i <= end]
        if not wanted:
            continue
        data = load_file(file)
        index = data["locations"][:, 2].astype(np.int64) + start
        for i in wanted:
            found[i] = data["activations"][index == i].astype(np.float32)
    return found


def _histogram(acts: np.ndarray, bins: int) -> dict:
    if not acts.size:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(acts, bins=bins, range=(0, float(acts.max())))
    return {"edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()}


def _token_values(decoding, ids: torch.Tensor, values: torch.Tensor) -> list[list]:
    return [[t, round(float(v), 4)] for t, v in zip(decoding.batch_decode(ids.cpu()), values)]


def _example_marks(folder: Path, stem: str) -> dict[str, dict[str, list]]:
    """Per example text (tokens joined), what each scorer made of it with the real
    explanation: the detection/fuzzing predictions, or the embedding similarity (a
    list, since fuzzing shows one window twice, correctly and wrongly highlighted)."""
    marks: dict[str, dict] = {}
    if not folder.is_dir():
        return marks
    for sub in sorted(folder.iterdir()):
        if sub.name.endswith(SHUFFLED):
            continue
        entries = read_json(sub / f"{stem}.txt", list, "leaving its marks out") or []
        for e in entries:
            if not isinstance(e, dict):
                continue
            if "str_tokens" in e:
                key, value = "".join(e["str_tokens"]), e.get("prediction")
            elif "text" in e:
                key, value = e["text"], _number(e.get("similarity"))
            else:
                continue
            marks.setdefault(key, {}).setdefault(sub.name, []).append(value)
    return marks


def _sections(record, decoding, marks: dict) -> list[dict]:
    """The record's examples in the order a reader wants them: what the explainer saw,
    what the scorers were tested on (by quantile), the non-activating ones."""
    test = sorted(record.test, key=lambda e: (e.quantile, -float(e.activations.max())))
    return [
        {"title": "Top activating (shown to the explainer)", "examples": [_example(e, decoding, marks) for e in record.train]},
        {"title": "Scorer test examples, by quantile (0 = highest)",
         "examples": [_example(e, decoding, marks, f"quantile {e.quantile}") for e in test]},
        {"title": "Non-activating (scorer negatives)",
         "examples": [_example(e, decoding, marks) for e in record.not_active]},
    ]


def _example(example, decoding, marks: dict, label: str = "") -> dict:
    tokens = example.str_tokens or decoding.batch_decode(example.tokens)
    return {
        "tokens": list(tokens), "ids": example.tokens.tolist(),
        "acts": [round(float(a), 4) for a in example.activations.float()],
        "label": label, "marks": marks.get("".join(tokens), {}),
    }


def _overview(arch, hp, group, results: Path, cfg, summary: dict, evaluation: dict) -> dict:
    """What the overview shows for one coder: histograms and the Table 1 row."""
    counts = latent_counts(cache.latents_dir(results, arch) / hp, cfg)
    freq = counts.firing[counts.firing > 0] / max(counts.tokens, 1)
    charts = [_bars(f"Firing frequency of live latents (log10; {counts.tokens} tokens)",
                    [("live latents", np.log10(freq).tolist(), "#4c72b0")])]
    scored = group[group["scorer"].notna()] if "scorer" in group else group.iloc[0:0]
    for scorer, s in scored.groupby("scorer", sort=True):
        metric = HEADLINE[scorer]
        shuffled = s["shuffled"].astype(bool)
        charts.append(_bars(f"{scorer} {metric}: real vs shuffled explanations", [
            ("real", s.loc[~shuffled, metric].dropna().tolist(), "#4c72b0"),
            ("shuffled", s.loc[shuffled, metric].dropna().tolist(), "#dd8452"),
        ], low=0.0, high=1.0))
    evals = [r for r in evaluation.get("results", [])
             if r.get("architecture") == arch and r.get("hookpoint") == hp]
    groups = [g for g in summary.get("groups", []) if g["architecture"] == arch and g["hookpoint"] == hp]
    latent_count = next((c for c in summary.get("latent_counts", [])
                         if c["architecture"] == arch and c["hookpoint"] == hp), {})
    return {
        "arch": arch, "hookpoint": hp, "charts": charts,
        "evaluation": {k: evals[0].get(k) for k in ("fvu", "delta_ce", "kl", "l0")} if evals else None,
        "groups": [{
            "scorer": g["scorer"], "metric": g["headline"], "latents": g["latents"],
            "real": _interval(g, "real"), "shuffled": _interval(g, "shuffled"),
            "diff": _interval(g, "real_minus_shuffled"),
            "spearman": g.get("spearman_frequency"),
        } for g in groups],
        "counts": latent_count,
    }


def _interval(g: dict, kind: str) -> str:
    return formatting.interval(*interval(g, g["headline"], kind) or (None, None, None), missing="–")


def _bars(title: str, series: list[tuple[str, list[float], str]], low=None, high=None, bins=HIST_BINS) -> dict:
    """Overlaid histograms of `series` on shared bins, as geometry for the SVG macro."""
    values = [v for _, vs, _ in series for v in vs]
    if not values:
        return {"title": title, "bars": [], "legend": [], "ticks": []}
    low = min(values) if low is None else low
    high = max(values) if high is None else high
    high = high if high > low else low + 1
    counted = [(name, np.histogram(vs, bins=bins, range=(low, high))[0], color) for name, vs, color in series]
    top = max(int(c.max()) for _, c, _ in counted) or 1
    width, height = 300.0, 100.0
    step = width / bins
    bars = [
        {"x": round(j * step + k * step / len(counted), 2), "w": round(step / len(counted), 2),
         "h": round(height * n / top, 2), "y": round(height - height * n / top, 2), "color": color,
         "tip": f"{name}: {n} in [{low + j * (high - low) / bins:.3g}, {low + (j + 1) * (high - low) / bins:.3g})"}
        for k, (name, c, color) in enumerate(counted) for j, n in enumerate(c.tolist()) if n
    ]
    return {"title": title, "bars": bars, "top": top,
            "legend": [(name, color, len(vs)) for name, vs, color in series],
            "ticks": [f"{low:.3g}", f"{(low + high) / 2:.3g}", f"{high:.3g}"]}


def _write_data(path: Path, callback: str, data) -> None:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # `</` would end an inline script; escaping it keeps the JSON the same value.
    text = text.replace("</", "<\\/")
    write_text(path, f"{callback}({text});\n")
