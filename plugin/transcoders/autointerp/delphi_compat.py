"""Workarounds for eai-delphi: importing it without vllm, reproducible scorers
(`seed_scorer`), test examples held out from the explainer's (`held_out_test`) and
client errors that stop a run (`Watched`); each docstring says why and when it can go.

Import Delphi's explainers and scorers on machines without vllm.

Why this module exists: in eai-delphi 0.1.3, ``delphi/clients/__init__.py`` imports
``Offline`` eagerly and ``offline.py`` imports vllm at module level. Explainers and
scorers only use ``delphi.clients.client``, but Python runs the package ``__init__``
first, so without vllm (CPU machines, laptops) ``import delphi.explainers`` fails.

What it does: before anything imports ``delphi.clients``, it registers that package
itself, pointing at Delphi's own ``clients`` directory, so every submodule
(``client``, ``openrouter``, ``offline``) is Delphi's unmodified code. The package
exposes ``Client`` and ``OpenRouter`` like the original and imports ``Offline`` only
when it is first accessed: where vllm is installed that is Delphi's real vLLM client;
where it is not, the access raises vllm's own ImportError. Nothing fakes vllm.

When it can go: once Delphi's clients package imports vllm lazily (or only from
``delphi.clients.offline``), delete this module and import Delphi directly.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

DELPHI_VERSION = "0.1.3"
INSTALL_HINT = (
    "CPU machines (no vllm): pip install 'transcoders[autointerp]' && "
    f"pip install --no-deps eai-delphi=={DELPHI_VERSION}. "
    "GPU machines with vllm: pip install 'transcoders[gpu]'."
)


class DelphiMissingError(ImportError):
    """Delphi (eai-delphi) is not installed; the message says how to install it."""


def require_delphi() -> ModuleType:
    """Return the `delphi` package, or raise `DelphiMissingError` with install commands."""
    if importlib.util.find_spec("delphi") is None:
        raise DelphiMissingError(
            f"Autointerp needs EleutherAI's Delphi (eai-delphi), which is not installed. "
            f"{INSTALL_HINT}"
        )
    return importlib.import_module("delphi")


def vllm_available() -> bool:
    """Whether vllm can be imported here (checked without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def import_delphi() -> ModuleType:
    """Make `delphi.explainers` and `delphi.scorers` importable, then return `delphi`.

    Idempotent. Call it before the first `import delphi.explainers` /
    `import delphi.scorers` anywhere in the process.
    """
    delphi = require_delphi()
    if "delphi.clients" not in sys.modules:
        _register_lazy_clients(delphi)
    return delphi


def _register_lazy_clients(delphi: ModuleType) -> None:
    clients_dir = Path(delphi.__file__).parent / "clients"
    spec = importlib.machinery.ModuleSpec("delphi.clients", None, is_package=True)
    spec.submodule_search_locations = [str(clients_dir)]
    package = importlib.util.module_from_spec(spec)
    package.__doc__ = (
        "Delphi's clients package, registered by transcoders.autointerp.delphi_compat "
        "so that Offline (and with it vllm) is imported only on first access."
    )
    package.__all__ = ["Client", "OpenRouter", "Offline"]

    def __getattr__(name: str):
        if name == "Offline":
            offline = importlib.import_module("delphi.clients.offline").Offline
            package.Offline = offline
            return offline
        raise AttributeError(f"module 'delphi.clients' has no attribute {name!r}")

    package.__getattr__ = __getattr__
    sys.modules["delphi.clients"] = package
    try:
        package.Client = importlib.import_module("delphi.clients.client").Client
        package.OpenRouter = importlib.import_module("delphi.clients.openrouter").OpenRouter
    except BaseException:
        del sys.modules["delphi.clients"]
        raise
    delphi.clients = package


def seed_scorer(scorer, key: str) -> None:
    """Make the random draws of a Delphi scorer's next call depend on `key` alone.

    Why: eai-delphi 0.1.3's scorers shuffle each latent's examples with state shared
    across latents: `EmbeddingScorer` with the global `random`, the classifier scorers
    (detection, fuzzing) with one `random.Random` per scorer, which also decides which
    examples share a prompt. The draws for a latent then depend on every latent scored
    before it, so a run resumed after a kill would write other score files (and, with
    LLM judges, other numbers) than an uninterrupted one. Both draw before their first
    `await`, so call this right before awaiting the scorer.

    When it can go: once Delphi's scorers take a per-call seed or generator.
    """
    random.seed(key)
    if isinstance(getattr(scorer, "rng", None), random.Random):
        scorer.rng = random.Random(key)


def held_out_test(record, n_train: int, n_test: int, n_quantiles: int, tokenizer):
    """Draw `record.test` by activation quantile from the examples the explainer did not
    see, with Delphi's own quantile sampler; returns the record.

    Why: eai-delphi 0.1.3's sampler draws test examples by quantile over *all* of a
    latent's examples, the explainer's top `n_train` included (with equal counts and
    quantile sampling they are the same examples). Dropping the overlap afterwards, as
    this project once did, leaves a rare latent without its top quantiles and with a
    varying number of test examples (40 windows and 20 shown: only deciles 5-9
    survive), which ties the score to firing frequency. Here the pool is the examples
    after the explainer's (`record.examples` is sorted by peak activation, and Delphi's
    "top" training examples are its first `n_train`), so every latent with at least
    `n_train + n_test` activating windows gets exactly `n_test` test examples, the same
    number from each quantile of what the explainer did not see. Call it on records
    sampled with `n_examples_test=0` (Delphi then draws no test examples).

    When it can go: once Delphi draws test examples from a pool disjoint from the
    training examples (run `tests/autointerp/test_pipeline.py`'s sampling tests).
    """
    from delphi.latents.samplers import normalize_activations, split_quantiles

    pool = record.examples[n_train:]
    test = split_quantiles(pool, n_quantiles, n_test)
    test = normalize_activations(test, record.max_activation)
    for example in test:
        example.str_tokens = tokenizer.batch_decode(example.tokens)
    record.test = test
    return record


class Watched:
    """Forwards to a Delphi client and remembers its exceptions.

    Why: eai-delphi 0.1.3's classifier scorers swallow client errors and count them as
    unparsed answers, but an endpoint that failed past its retries must stop the run,
    not turn into missing predictions. The caller checks `errors` after each scorer
    call. Delphi only calls `generate` and reads `model`, so this need not subclass
    its `Client` (and this module imports without Delphi).

    When it can go: once Delphi's scorers let client errors propagate.
    """

    def __init__(self, client):
        self.model = client.model
        self.client = client
        self.errors: list[BaseException] = []

    async def generate(self, prompt, **kwargs):
        # A scorer sends a latent's prompts one after another and carries on past a
        # failed one: fail the rest at once instead of waiting out each one's retries.
        if self.errors:
            raise self.errors[0]
        try:
            return await self.client.generate(prompt, **kwargs)
        except Exception as err:
            self.errors.append(err)
            raise
