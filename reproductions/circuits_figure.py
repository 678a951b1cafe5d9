"""The static picture of pruned attribution graphs, drawn from the graph files
circuit-tracer writes for its frontend (`graphs/<slug>.json`)."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.collections import LineCollection

from transcoders.atomic import atomic_path

from .figures import new_figure

EDGES_DRAWN = 400
"""The strongest edges of each graph; the rest would only grey the picture."""

STYLE = {
    "embedding": ("s", "#7f7f7f", "token"),
    "cross layer transcoder": ("o", "#1f77b4", "transcoder feature"),
    "mlp reconstruction error": ("D", "#d62728", "error node"),
    "logit": ("^", "#2ca02c", "output logit"),
}


def _row(node: dict) -> float:
    return -1.0 if node["layer"] == "E" else float(node["layer"])


def positions(nodes: list[dict]) -> dict[str, tuple[float, float]]:
    """x: token position, nodes of one (layer, position) cell spread across it; y: layer."""
    cells: dict[tuple[float, int], list[dict]] = {}
    for node in nodes:
        cells.setdefault((_row(node), node["ctx_idx"]), []).append(node)
    where = {}
    for (row, pos), members in cells.items():
        members.sort(key=lambda n: -(n.get("influence") or 0))
        for i, node in enumerate(members):
            offset = 0.0 if len(members) == 1 else (i / (len(members) - 1) - 0.5) * 0.7
            where[node["node_id"]] = (pos + offset, row)
    return where


def draw_graph(ax, graph: dict, title: str) -> None:
    """One pruned graph on `ax`."""
    where = positions(graph["nodes"])
    links = sorted(graph["links"], key=lambda e: -abs(e["weight"]))[:EDGES_DRAWN]
    top = max((abs(e["weight"]) for e in links), default=1.0)
    segments = [(where[e["source"]], where[e["target"]]) for e in links]
    colors = [((0.12, 0.47, 0.71) if e["weight"] > 0 else (0.84, 0.15, 0.16),
               min(1.0, 0.08 + 0.9 * abs(e["weight"]) / top)) for e in links]
    ax.add_collection(LineCollection(segments, colors=colors, linewidths=0.7, zorder=1))
    for kind, (marker, color, label) in STYLE.items():
        xy = [where[n["node_id"]] for n in graph["nodes"] if n["feature_type"] == kind]
        if xy:
            ax.scatter(*zip(*xy), marker=marker, s=18, color=color, label=label, zorder=2)
    tokens = graph["metadata"]["prompt_tokens"]
    ax.set_xticks(range(len(tokens)), [repr(t)[1:-1] for t in tokens], rotation=60, fontsize=7)
    ax.set_xlim(-0.7, len(tokens) - 0.3)
    top = max(_row(n) for n in graph["nodes"])
    layers = list(range(0, int(top), max(1, int(top) // 6)))
    ax.set_yticks([-1, *layers, top], ["tokens", *map(str, layers), "logits"])
    ax.set_ylabel("MLP layer")
    ax.set_title(title, fontsize=9)
    for node in graph["nodes"]:
        if node["feature_type"] == "logit" and node.get("is_target_logit"):
            x, y = where[node["node_id"]]
            ax.annotate(node["clerp"], (x, y), xytext=(-4, 6), textcoords="offset points",
                        ha="right", fontsize=7)


def draw(graph_files: dict[str, Path], scores: dict, png: Path) -> None:
    """Each architecture's pruned graph for one prompt, side by side."""
    fig, axes = new_figure(len(graph_files))
    fig.set_size_inches(6.5 * len(graph_files), 6.0)
    for ax, (arch, file) in zip(axes, graph_files.items()):
        graph = json.loads(Path(file).read_text())
        slug = graph["metadata"]["slug"].removeprefix(f"{arch}-")
        s = scores[arch]["prompts"][slug]
        draw_graph(ax, graph, f"{arch}: replacement {s['replacement_score']:.2f}, "
                   f"completeness {s['completeness_score']:.2f}\n"
                   f"{len(graph['nodes'])} nodes, {len(graph['links'])} edges after pruning")
    axes[0].legend(loc="center left", fontsize=7)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
