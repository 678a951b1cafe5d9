"""The vllm-free import of Delphi's explainers and scorers (delphi_compat)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import transcoders.autointerp.delphi_compat as compat

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("delphi") is None, reason="Delphi is not installed"
)


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.skipif(compat.vllm_available(), reason="checks the machine without vllm")
def test_explainers_and_scorers_import_without_vllm():
    proc = run_python(
        """
import importlib.util, sys
from transcoders.autointerp.delphi_compat import import_delphi
import_delphi()
from delphi.explainers import DefaultExplainer
from delphi.scorers import DetectionScorer, FuzzingScorer
import delphi.clients
from delphi.clients import Client, OpenRouter
assert "vllm" not in sys.modules, "vllm was imported or faked"
assert importlib.util.find_spec("vllm") is None, "a fake vllm is findable"
assert "delphi.clients.offline" not in sys.modules
clients_dir = importlib.util.find_spec("delphi").submodule_search_locations[0] + "/clients"
for name in ("client", "openrouter"):
    assert sys.modules["delphi.clients." + name].__file__.startswith(clients_dir), name
assert DetectionScorer.__init__.__annotations__["client"] is Client
try:
    from delphi.clients import Offline
except ModuleNotFoundError as err:
    assert err.name == "vllm", err
else:
    raise AssertionError("Offline imported without vllm")
print("ok")
"""
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


@pytest.mark.skipif(not compat.vllm_available(), reason="needs vllm")
def test_offline_is_delphis_real_client_where_vllm_is_installed():
    proc = run_python(
        """
from transcoders.autointerp.delphi_compat import import_delphi
import_delphi()
from delphi.clients import Offline
assert Offline.__module__ == "delphi.clients.offline"
print("ok")
"""
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_import_delphi_is_idempotent():
    first = compat.import_delphi()
    clients = sys.modules["delphi.clients"]
    assert compat.import_delphi() is first
    assert sys.modules["delphi.clients"] is clients


def test_missing_delphi_names_the_install_command():
    # Load delphi_compat by path with site-packages removed from sys.path, so Delphi
    # is genuinely absent in that process.
    path = Path(compat.__file__)
    proc = run_python(
        f"""
import importlib.util, sys
sys.path = [p for p in sys.path if "site-packages" not in p]
spec = importlib.util.spec_from_file_location("delphi_compat", {str(path)!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
try:
    module.import_delphi()
except module.DelphiMissingError as err:
    print(err)
else:
    raise AssertionError("no error without Delphi")
"""
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pip install --no-deps eai-delphi==0.1.3" in proc.stdout
    assert "transcoders[gpu]" in proc.stdout
