"""MkDocs hook: inline result CSVs into pages at build time, so no number is typed.

A page marks a region like this:

    <!-- csv-table: reproductions/results/embedded/table1.csv -->
    !!! note "No result has been generated yet"
        ...
    <!-- /csv-table -->

The path is relative to the folder holding mkdocs.yml. If the CSV exists, the
region is replaced by a Markdown table of its rows and a line naming the file;
otherwise the region (the notice) is kept as written.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

REGION = re.compile(
    r"<!-- csv-table: (?P<path>\S+) -->\n(?P<notice>.*?)<!-- /csv-table -->",
    re.S,
)


def cell(text: str) -> str:
    """Floats to 4 significant figures; everything else as written."""
    text = text.strip()
    if re.fullmatch(r"[-+]?\d*\.\d+(e[-+]?\d+)?|[-+]?\d+e[-+]?\d+", text, re.I):
        return f"{float(text):.4g}"
    return text.replace("|", r"\|")


def markdown_table(path: Path) -> str:
    """The CSV as a Markdown table, with its source named below it."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path} is empty")
    header, body = rows[0], rows[1:]
    lines = [
        "| " + " | ".join(cell(h) for h in header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cell(c) for c in row) + " |" for row in body),
    ]
    return "\n".join(lines) + "\n"


def render(markdown: str, root: Path) -> str:
    """Replace every csv-table region whose CSV exists under `root`."""

    def replace(match: re.Match) -> str:
        rel = match["path"]
        path = root / rel
        if not path.is_file():
            return match[0]
        return (
            f'<div class="csv-table" markdown>\n\n{markdown_table(path)}\n'
            f"*Generated at build time from `{rel}`; floats shown to 4 significant "
            "figures.*\n\n</div>\n"
        )

    return REGION.sub(replace, markdown)


def on_page_markdown(markdown, page, config, files):
    """MkDocs entry point."""
    return render(markdown, Path(config["config_file_path"]).parent)
