import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from transcoders import architectures
from transcoders.architectures import Architecture, UnknownArchitecture

REPO = Path(__file__).resolve().parents[1]


def test_builtins_and_their_sites():
    registry = architectures.available()
    assert list(registry)[:3] == ["sae", "transcoder", "skip-transcoder"]
    assert registry["sae"].reads == "output"
    assert registry["transcoder"].reads == "input"
    assert registry["skip-transcoder"].reads == "input"
    assert all(a.predicts == "output" for a in registry.values())

    skip = registry["skip-transcoder"].coder_config(k=8, num_latents=64)
    assert skip.transcode and skip.skip_connection and skip.k == 8
    assert not registry["sae"].coder_config().transcode


def test_unknown_architecture_lists_known_ones():
    with pytest.raises(UnknownArchitecture) as err:
        architectures.get("transcodr")
    message = str(err.value)
    assert "sae, transcoder, skip-transcoder" in message
    assert "Did you mean 'transcoder'" in message


def test_overrides_cannot_redefine_the_architecture():
    with pytest.raises(ValueError, match="fixes"):
        architectures.get("sae").coder_config(transcode=True)
    with pytest.raises(ValueError, match="Unknown SparseCoderConfig"):
        architectures.get("sae").coder_config(latents=3)


def test_infer_from_plain_sparsify_config():
    from transcoders import hub

    for name in ("sae", "transcoder", "skip-transcoder"):
        cfg = architectures.get(name).coder_config().to_dict()
        assert hub.reads_from_config(cfg) == architectures.get(name).reads
    assert hub.reads_from_config({"k": 32}) is None  # before sparsify PR #49
    assert hub.reads_from_config({"transcode": False, "skip_connection": True}) == "input"


def _install_plugin(root: Path, module: str = "groupmax_plugin") -> None:
    """A minimal installed distribution that registers one architecture."""
    (root / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from transcoders.architectures import Architecture

            GROUPMAX = Architecture(
                "groupmax-transcoder",
                "Transcoder with sparsify's groupmax activation.",
                {"transcode": True, "activation": "groupmax"},
            )
            """
        )
    )
    dist_info = root / "groupmax_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: groupmax-plugin\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[transcoders.architectures]\ngroupmax = {module}:GROUPMAX\n"
    )


def test_entry_point_registration(tmp_path, monkeypatch):
    _install_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    arch = architectures.get("groupmax-transcoder")
    assert isinstance(arch, Architecture)
    assert arch.reads == "input"
    assert arch.coder_config(k=4).activation == "groupmax"

    listing = subprocess.run(
        [sys.executable, "-m", "transcoders", "architectures"],
        capture_output=True, text=True, check=True,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
    ).stdout
    assert "groupmax-transcoder" in listing and "skip-transcoder" in listing


def test_entry_point_must_name_an_architecture(tmp_path, monkeypatch):
    _install_plugin(tmp_path, module="broken_plugin")
    (tmp_path / "broken_plugin.py").write_text("GROUPMAX = 'not an architecture'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TypeError, match="must name an Architecture"):
        architectures.available()
