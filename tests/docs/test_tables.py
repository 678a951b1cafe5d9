"""The docs hook that inlines result files: tables appear when the file exists, the
page's notice stays when it does not. (The browser test checks the built site; this
one runs without Chromium.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("docs_tables", REPO / "docs/gen/tables.py")
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)

PAGE = """Before.

<!-- csv-table: out/table1.csv -->
NOTICE-CSV
<!-- /csv-table -->

<!-- json-table: out/results.json comparisons -->
NOTICE-JSON
<!-- /json-table -->
"""


def test_notices_stay_without_results(tmp_path):
    assert tables.render(PAGE, tmp_path) == PAGE


def test_tables_replace_notices(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/table1.csv").write_text("arch,fvu,ci\nsae,0.1234567,0.5 [0.4; 0.6]\n")
    (tmp_path / "out/results.json").write_text(
        json.dumps({"comparisons": [{"pair": "a - b", "delta": None}, {"pair": "c - d", "delta": 2.5e-05}]})
    )
    page = tables.render(PAGE, tmp_path)
    assert "NOTICE" not in page
    assert "| arch | fvu | ci |" in page and "| sae | 0.1235 | 0.5 [0.4; 0.6] |" in page
    assert "| a - b | – |" in page and "| c - d | 2.5e-05 |" in page
    assert "Generated at build time from `out/table1.csv`" in page


def test_presets_table_is_read_from_the_code():
    text = tables.presets_table(REPO)
    PRESETS = sys.modules["reproductions.presets"].PRESETS
    assert text.splitlines()[0] == "| option | " + " | ".join(f"`{n}`" for n in PRESETS) + " |"
    assert any(line.startswith("| `--k` |") for line in text.splitlines())


def test_probes_table_lists_decorated_tests(tmp_path):
    (tmp_path / "tests/probes").mkdir(parents=True)
    (tmp_path / "tests/probes/test_x.py").write_text(
        "@probe('train', '`--k 0`', 'one-line error')\ndef test_a():\n    pass\n\n"
        "def test_not_a_probe():\n    pass\n"
    )
    table = tables.probes_table(tmp_path)
    assert "| train | `--k 0` | one-line error |" in table
    assert table.count("\n") == 3


def test_troubleshooting_page_shows_the_repos_probes():
    assert "<!-- probes-table -->" in (REPO / "docs/troubleshooting.md").read_text()
    assert tables.probes(REPO), "tests/probes holds no @probe tests"
