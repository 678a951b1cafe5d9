"""Every command and code example on the Quickstart and Extending pages runs.

The blocks are taken from the Markdown itself (see `docs_blocks.py` for the rules), so a
page that drifts from the code fails here.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from docs_blocks import Block, blocks, matches

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
TESTED_PAGES = [
    "quickstart.md",
    # Trains a coder on the embedded model (about a minute and a half).
    pytest.param("extending.md", marks=pytest.mark.integration),
]
TIMEOUT_S = 300


def page_env(workdir: Path) -> dict[str, str]:
    """The environment a reader has after installing the plugin, with `pip install`
    redirected into a folder of the test's own (see the Extending page)."""
    site = workdir / "site-packages"
    site.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(site),
        HF_HUB_OFFLINE="1",
        PIP_TARGET=str(site),
        PIP_NO_DEPS="1",
        PIP_NO_INDEX="1",
        # pip reads a "no" for this negative flag as "turn isolation off".
        PIP_NO_BUILD_ISOLATION="0",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def check_console(block: Block, page: str, cwd: Path, env: dict[str, str]) -> None:
    for cmd, expected in block.commands:
        if block.mode == "dry-run":
            args = shlex.split(cmd)
            assert args[0] == "make", f"{page}:{block.line}: dry-run is for make commands"
            proc = run(["make", "-n", *args[1:]], REPO, env)
        else:
            proc = run(["bash", "-c", cmd], cwd, env)
        output = proc.stdout + proc.stderr
        where = f"{page}:{block.line}: `{cmd}`"
        assert proc.returncode == 0, f"{where} exited {proc.returncode}:\n{output}"
        if block.mode == "run" and expected.strip():
            assert matches(expected, output), (
                f"{where} printed\n{output}\nbut the page says\n{expected}"
            )


def run_page(page: str, cwd: Path) -> None:
    env = page_env(cwd)
    session: list[str] = []
    for block in blocks(DOCS / page):
        where = f"{page}:{block.line}"
        if block.mode == "not-run":
            assert block.reason, f"{where}: a not-run block must give its reason"
            continue
        if block.title is not None:
            (cwd / block.title).parent.mkdir(parents=True, exist_ok=True)
            (cwd / block.title).write_text(block.body)
        elif block.lang == "console":
            check_console(block, page, cwd, env)
        elif block.lang == "bash":
            proc = run(["bash", "-euo", "pipefail", "-c", block.body], cwd, env)
            assert proc.returncode == 0, f"{where} failed:\n{proc.stdout}{proc.stderr}"
        elif block.lang == "python":
            session.append(block.body)
            proc = run([sys.executable, "-c", "\n".join(session)], cwd, env)
            assert proc.returncode == 0, f"{where} failed:\n{proc.stdout}{proc.stderr}"
        else:
            pytest.fail(f"{where}: a ```{block.lang} block can't be run; give it a "
                        "title to make it a file, or mark it not-run with a reason")


@pytest.mark.parametrize("page", TESTED_PAGES)
def test_page_examples_run(page: str, tmp_path: Path) -> None:
    run_page(page, tmp_path)


def test_extension_is_listed_by_the_cli() -> None:
    """The Extending example registers its architecture through a real entry point:
    the page's own expected output says `transcoders architectures` lists it, and
    `test_page_examples_run` checks that output."""
    expected = [
        out for b in blocks(DOCS / "extending.md") if b.lang == "console"
        for cmd, out in b.commands if cmd == "transcoders architectures"
    ]
    assert expected and "groupmax-transcoder reads module input" in expected[0]


def test_quickstart_commands_are_the_readmes() -> None:
    readme = REPO / "README.md"
    if not readme.is_file():
        pytest.skip("README.md is not written yet")
    commands = [
        cmd for b in blocks(DOCS / "quickstart.md") if b.mode == "dry-run"
        for cmd, _ in b.commands
    ]
    assert len(commands) == 2, commands
    text = readme.read_text()
    for cmd in commands:
        assert cmd in text, f"Quickstart command `{cmd}` is not in README.md"
