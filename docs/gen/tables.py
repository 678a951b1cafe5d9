"""MkDocs hook: inline result files into pages at build time, so no number is typed.

A page marks a region like this:

    <!-- csv-table: reproductions/results/embedded/table1.csv -->
    !!! note "No result has been generated yet"
        ...
    <!-- /csv-table -->

or, for a list of records inside a JSON file,

    <!-- json-table: reproductions/results/embedded/results.json comparisons -->
    ...
    <!-- /json-table -->

Paths are relative to the folder holding mkdocs.yml. If the file exists, the region
is replaced by a Markdown table of its rows and a line naming the file; otherwise
the region (the notice) is kept as written.

Figures work the same way: `<!-- figure: reproductions/results/embedded/pareto.png -->`
... `<!-- /figure -->` shows the image if it exists (copied into the site under
`generated/`), else keeps the notice.

A static site (the latent browser) works alike: `<!-- site: PATH -->` ...
`<!-- /site -->` becomes a link to `PATH/index.html` when it exists, with every file
under PATH copied into the site under `generated/`.

`<!-- presets-table -->` is replaced by the reproduction presets' values, read from
`reproductions.presets` itself, and `<!-- probes-table -->` by the failure probes that
`tests/probes/` checks (read from their `@probe(...)` decorators, not imported).
"""

from __future__ import annotations

import ast
import csv
import json
import math
import posixpath
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

from transcoders.formatting import markdown_table

REGION = re.compile(
    r"<!-- (?P<kind>csv|json)-table: (?P<path>\S+)(?: (?P<key>\w+))? -->\n"
    r"(?P<notice>.*?)<!-- /(?P=kind)-table -->",
    re.S,
)
FIGURE = re.compile(r"<!-- figure: (?P<path>\S+) -->\n(?P<notice>.*?)<!-- /figure -->", re.S)
SITE = re.compile(r"<!-- site: (?P<path>\S+) -->\n(?P<notice>.*?)<!-- /site -->", re.S)
GENERATED = "generated"
FLOAT = re.compile(r"[-+]?\d*\.\d+(e[-+]?\d+)?|[-+]?\d+e[-+]?\d+", re.I)


def cell(value) -> str:
    """Floats to 4 significant figures, missing values as a dash, the rest as written."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value).strip()
    if FLOAT.fullmatch(text):
        return f"{float(text):.4g}"
    return (text or "–").replace("|", r"\|")


def read_csv(path: Path) -> tuple[list[str], list[list]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path} is empty")
    return rows[0], rows[1:]


def read_json_records(path: Path, key: str) -> tuple[list[str], list[list]]:
    records = json.loads(path.read_text())[key]
    header = list(dict.fromkeys(k for r in records for k in r))
    return header, [[r.get(k) for k in header] for r in records]


def render(markdown: str, root: Path) -> str:
    """Replace every table region whose file exists under `root`."""

    def replace(match: re.Match) -> str:
        rel = match["path"]
        path = root / rel
        if not path.is_file():
            return match[0]
        if match["kind"] == "csv":
            header, rows = read_csv(path)
            source = f"`{rel}`"
        else:
            header, rows = read_json_records(path, match["key"])
            source = f"`{match['key']}` in `{rel}`"
        return (
            f'<div class="{match["kind"]}-table generated-table" markdown>\n\n'
            f"{markdown_table(header, rows, cell)}\n"
            f"*Generated at build time from {source}; floats shown to 4 significant "
            "figures.*\n\n</div>\n"
        )

    return REGION.sub(replace, markdown)


def presets_table(root: Path) -> str:
    """Every preset's values, one column per preset, from the code that uses them."""
    sys.path.insert(0, str(root))
    try:
        from reproductions.presets import OVERRIDABLE, PRESETS
    finally:
        sys.path.remove(str(root))
    presets = list(PRESETS.values())
    header = ["option", *(f"`{p.name}`" for p in presets)]
    rows = [
        [f"`--{f.name.replace('_', '-')}`", *(_value(getattr(p, f.name)) for p in presets)]
        for f in OVERRIDABLE
    ]
    return markdown_table(header, rows, cell)


def probes(root: Path) -> list[tuple[str, str, str]]:
    """(command, tried, answer) of every `@probe(...)`-decorated test under tests/probes."""
    found = []
    for path in sorted((root / "tests" / "probes").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "probe":
                    found.append(tuple(ast.literal_eval(a) for a in deco.args))
    return found


def probes_table(root: Path) -> str:
    """The probes as a Markdown table, grouped by command."""
    rows = sorted(probes(root), key=lambda p: p[0])
    return markdown_table(["command", "what was tried", "what you get"], rows, cell)


def _value(value) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1000:
        return f"{value:,}"
    return "–" if value is None else str(value)


def figures(markdown: str, root: Path, page_uri: str) -> str:
    """Replace every figure region whose image exists by the image."""

    def replace(match: re.Match) -> str:
        rel = match["path"]
        if not (root / rel).is_file():
            return match[0]
        link = posixpath.relpath(f"{GENERATED}/{rel}", posixpath.dirname(page_uri) or ".")
        return f"![Generated from {rel}]({link})\n\n*Generated from `{rel}`.*\n"

    return FIGURE.sub(replace, markdown)


def sites(markdown: str, root: Path, page_uri: str) -> str:
    """Replace every site region whose index.html exists by a link to it."""

    def replace(match: re.Match) -> str:
        rel = match["path"]
        if not (root / rel / "index.html").is_file():
            return match[0]
        link = posixpath.relpath(f"{GENERATED}/{rel}/index.html", posixpath.dirname(page_uri) or ".")
        return f"[Open it]({link}) (copied from `{rel}`).\n"

    return SITE.sub(replace, markdown)


def on_files(files, config):
    """MkDocs entry point: copy every existing figure, and every file of every
    existing site, that a page names into the site."""
    root = Path(config["config_file_path"]).parent

    def add(source: Path, rel: str) -> None:
        uri = f"{GENERATED}/{rel}"
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(source)))

    for page in Path(config["docs_dir"]).rglob("*.md"):
        text = page.read_text()
        for match in FIGURE.finditer(text):
            if (root / match["path"]).is_file():
                add(root / match["path"], match["path"])
        for match in SITE.finditer(text):
            folder = root / match["path"]
            if (folder / "index.html").is_file():
                for source in sorted(p for p in folder.rglob("*") if p.is_file()):
                    add(source, f"{match['path']}/{source.relative_to(folder).as_posix()}")
    return files


def on_page_markdown(markdown, page, config, files):
    """MkDocs entry point."""
    root = Path(config["config_file_path"]).parent
    if "<!-- presets-table -->" in markdown:
        markdown = markdown.replace("<!-- presets-table -->", presets_table(root))
    if "<!-- probes-table -->" in markdown:
        markdown = markdown.replace("<!-- probes-table -->", probes_table(root))
    uri = page.file.src_uri
    return sites(figures(render(markdown, root), root, uri), root, uri)
