"""The built site opens in headless Chromium: the home page shows the results table
(or says plainly that there is none yet) and every navigation link resolves.

The docs are built from a temporary copy of `mkdocs.yml`, `docs/` and the
reproduction's code, so the test can add or remove result files without touching
the working tree.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = "reproductions/results/embedded"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_RESULT = ("No result has been generated yet", "No comparison has been generated yet")

# Rendering fixtures only: these rows are not results, and the test checks that
# they reach the page unchanged, rounding aside.
FIXTURE = {
    "table1.csv": (
        "architecture,fvu,note\n"
        "fixture-sae,0.123456,rendering fixture - not a result\n"
        "fixture-transcoder,0.0654321,rendering fixture - not a result\n"
    ),
    "results.json": json.dumps(
        {"comparisons": [{"comparison": "fixture-a - fixture-b", "delta_ce": -0.01234567}]}
    ),
}

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium)",
)


def build_site(tmp: Path, results: dict[str, str | bytes] | None) -> Path:
    """Build the docs from a copy of the sources, with `results` (file name ->
    contents) written into the results folder."""
    src = tmp / "src"
    src.mkdir()
    shutil.copy(REPO / "mkdocs.yml", src / "mkdocs.yml")
    shutil.copytree(REPO / "docs", src / "docs")
    (src / "plugin").symlink_to(REPO / "plugin")
    # The reproduction's code (the presets table reads it), not its results.
    (src / "reproductions").mkdir()
    for module in (REPO / "reproductions").glob("*.py"):
        shutil.copy(module, src / "reproductions")
    for name, text in (results or {}).items():
        (src / RESULTS).mkdir(parents=True, exist_ok=True)
        target = src / RESULTS / name
        target.write_bytes(text) if isinstance(text, bytes) else target.write_text(text)
    site = tmp / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=src, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr}"
    return site


@pytest.fixture
def serve():
    """Serve a folder on 127.0.0.1; yields a function from folder to base URL."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(Quiet, directory=str(folder))
        server = QuietServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # Chromium drops connections it no longer needs; that is not a failure.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def rendered_dom(url: str, profile: Path) -> str:
    """The page's DOM after Chromium has loaded it and run its scripts."""
    proc = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
            "--dump-dom", url,
        ],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, f"chromium failed on {url}:\n{proc.stderr[-2000:]}"
    return proc.stdout


class Page(HTMLParser):
    """Collects navigation links and the cells of the generated result tables."""

    def __init__(self) -> None:
        super().__init__()
        self.nav_links: list[str] = []
        self.images: list[str] = []
        self.table_cells: list[str] = []
        self._depth = 0  # >0 while inside a generated table div
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "a" and "md-nav__link" in classes and attrs.get("href"):
            self.nav_links.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "div" and ("generated-table" in classes or self._depth):
            self._depth += 1
        if self._depth and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "div" and self._depth:
            self._depth -= 1
        if tag in ("td", "th") and self._cell is not None:
            self.table_cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(dom: str) -> Page:
    page = Page()
    page.feed(dom)
    return page


def test_home_renders_results_table(tmp_path, serve):
    base = serve(build_site(tmp_path, FIXTURE))
    dom = rendered_dom(base, tmp_path / "profile")
    cells = parse(dom).table_cells
    assert cells[:3] == ["architecture", "fvu", "note"]
    assert "fixture-transcoder" in cells and "0.06543" in cells and "0.1235" in cells
    assert "fixture-a - fixture-b" in cells and "-0.01235" in cells
    assert not any(notice in dom for notice in NO_RESULT)


def test_home_says_when_there_is_no_result(tmp_path, serve):
    base = serve(build_site(tmp_path, None))
    dom = rendered_dom(base, tmp_path / "profile")
    assert all(notice in dom for notice in NO_RESULT)
    assert parse(dom).table_cells == []


def test_navigation_links_resolve(tmp_path, serve):
    base = serve(build_site(tmp_path, None))
    links = parse(rendered_dom(base, tmp_path / "profile")).nav_links
    pages = {urljoin(base, href).split("#")[0] for href in links}
    # Home, Quickstart, Concepts, six guides, Extending, Formats, Troubleshooting,
    # Performance, API reference.
    assert len(pages) >= 14, sorted(pages)
    for url in sorted(pages):
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200, url


def test_generated_figure_is_shown(tmp_path, serve):
    # A 1x1 PNG standing in for a figure: a rendering fixture, not a result.
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
    )
    base = serve(build_site(tmp_path, {"pareto.png": png}))
    url = urljoin(base, "guides/reproductions/")
    images = [src for src in parse(rendered_dom(url, tmp_path / "profile")).images
              if src.endswith("pareto.png")]
    assert len(images) == 1
    with urllib.request.urlopen(urljoin(url, images[0]), timeout=10) as response:
        assert response.read() == png
