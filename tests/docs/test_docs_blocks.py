"""The example runner's own rules: block parsing and output matching."""

from __future__ import annotations

from docs_blocks import blocks, matches

PAGE = """Intro.

<!-- docs-test: not-run needs a GPU -->
```bash
nvidia-smi
```

```python title="pkg.py"
X = 1
```

```console
$ echo hi
hi
```
"""


def test_blocks_read_markers_titles_and_commands(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    gpu, file, console = blocks(page)
    assert (gpu.mode, gpu.reason, gpu.lang) == ("not-run", "needs a GPU", "bash")
    assert (file.mode, file.title, file.body) == ("run", "pkg.py", "X = 1\n")
    assert console.commands == [("echo hi", "hi")]


def test_output_matching():
    assert matches("a\nb", "a\nb\n")
    assert matches("...\nb", "x\ny\nb\n")
    assert matches("fvu ... in ... s", "fvu 0.5 in 2.0 s")
    assert matches("a  ", "a\n")  # trailing spaces are not compared
    assert not matches("a\nb", "a\nc\n")
    assert not matches("a", "a\nextra\n")
    assert not matches("fvu ... s", "fvu 1\n2 s\n")  # in-line `...` stays on its line
