"""Fenced code blocks of a Markdown page, and how the docs tests run them.

A block is run as written unless the line just above its fence is a marker:

    <!-- docs-test: dry-run -->            console block of `make` commands: run
                                           `make -n ...` (the target must resolve)
    <!-- docs-test: not-run REASON -->     not run; the page must say why

Languages: `console` blocks hold `$ command` lines, each followed by the output it
must print (`...` on a line of its own matches any lines, inside a line any text);
`bash` blocks run as scripts; `python` blocks run as one growing session per page
(each block runs after all the page's earlier python blocks); blocks with
`title="FILE"` are written to FILE in the page's working directory instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(
    r"^(?P<marker><!-- docs-test: (?P<mode>[\w-]+)(?: (?P<reason>[^\n]*?))? -->\n)?"
    r"```(?P<lang>\w+)(?P<attrs>[^\n]*)\n(?P<body>.*?)^```$",
    re.M | re.S,
)
TITLE = re.compile(r'title="(?P<title>[^"]+)"')
MODES = {"run", "dry-run", "not-run"}


@dataclass(frozen=True)
class Block:
    """One fenced block as the page shows it."""

    lang: str
    body: str
    mode: str
    reason: str
    title: str | None
    line: int

    @property
    def commands(self) -> list[tuple[str, str]]:
        """(command, expected output) pairs of a `console` block."""
        pairs: list[tuple[str, list[str]]] = []
        for line in self.body.splitlines():
            if line.startswith("$ "):
                pairs.append((line[2:], []))
            elif pairs:
                pairs[-1][1].append(line)
            elif line.strip():
                raise ValueError(f"line {self.line}: output before any `$ ` command")
        return [(cmd, "\n".join(out)) for cmd, out in pairs]


def blocks(page: Path) -> list[Block]:
    """Every fenced block at the top level of `page`, in order."""
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        title = TITLE.search(m["attrs"])
        mode = m["mode"] or "run"
        if mode not in MODES:
            raise ValueError(f"{page}: unknown docs-test marker {mode!r}")
        found.append(
            Block(
                lang=m["lang"],
                body=m["body"],
                mode=mode,
                reason=(m["reason"] or "").strip(),
                title=title["title"] if title else None,
                line=text[: m.start("lang")].count("\n") + 1,
            )
        )
    return found


def output_pattern(expected: str) -> re.Pattern:
    """A regex for the whole output: `...` lines match any lines, `...` in a line
    matches any text, trailing spaces are ignored."""
    parts = []
    for line in expected.rstrip("\n").splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            pieces = [re.escape(p) for p in line.rstrip().split("...")]
            parts.append(r"[^\n]*?".join(pieces) + r"[ \t]*\n")
    return re.compile("".join(parts) + r"\Z")


def matches(expected: str, actual: str) -> bool:
    """Whether `actual` output is what the page says it prints."""
    actual = actual if actual.endswith("\n") or not actual else actual + "\n"
    return output_pattern(expected).match(actual) is not None
