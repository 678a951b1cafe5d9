"""A Delphi client that runs any Hugging Face causal LM in-process with transformers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

from ...data import EMBEDDED, load_model
from ..delphi_compat import import_delphi
from .base import Generation, Prompt, TokenLogprobs, TopLogprob, as_messages

import_delphi()
from delphi.clients.client import Client, Response  # noqa: E402

# Role-labelled transcript used when no chat template is applied. A model writing
# the next user turn has finished its answer, hence the default stop string.
PLAIN_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
PLAIN_STOP = "\nUser:"


@dataclass(eq=False)
class _Request:
    ids: list[int]
    settings: Generation
    future: asyncio.Future


class LocalClient(Client):
    """Generate with a transformers causal LM on CPU or CUDA.

    Requests that arrive concurrently (Delphi awaits many `generate` calls at once)
    are collected into one left-padded `generate` batch per distinct setting.
    Decoding is greedy unless a request passes `temperature > 0`.
    """

    def __init__(
        self,
        model: str | PreTrainedModel = EMBEDDED,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        chat_template: bool = True,
        batch_size: int = 8,
        max_tokens: int = 256,
    ):
        """
        Args:
            model: `embedded`, a hub id or local path (loaded with
                `transcoders.data.load_model`), or an already-loaded model.
            tokenizer: Required with an already-loaded model.
            device, dtype: Where and how to load a model given by name.
            chat_template: Render chat prompts with the tokenizer's chat template when it
                has one. False renders a plain `Role: text` transcript, which small
                models such as SmolLM2-135M follow better as judges.
            batch_size: Most prompts per `generate` call.
            max_tokens: Default generation length when a request does not say.
        """
        if isinstance(model, str):
            model, tokenizer = load_model(model, device=device, dtype=dtype)
        elif tokenizer is None:
            raise ValueError("LocalClient needs the tokenizer of an already-loaded model")
        super().__init__(model.name_or_path or type(model).__name__)
        self.lm = model.eval()
        self.tokenizer = tokenizer
        self.chat_template = chat_template and tokenizer.chat_template is not None
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.pad_id = _first(tokenizer.pad_token_id, tokenizer.eos_token_id, 0)
        eos = _first(model.generation_config.eos_token_id, tokenizer.eos_token_id)
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self._pending: list[_Request] = []
        self._worker: asyncio.Task | None = None

    def __repr__(self) -> str:
        return (
            f"LocalClient({self.model!r}, device={self.lm.device}, "
            f"chat_template={self.chat_template})"
        )

    def render(self, prompt: Prompt) -> str:
        """The exact text the model is given for `prompt`."""
        messages = as_messages(prompt)
        if self.chat_template:
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        if isinstance(prompt, str):
            return prompt
        turns = [f"{PLAIN_ROLES.get(m['role'], m['role'])}: {m['content']}" for m in messages]
        return "\n\n".join(turns + ["Assistant:"])

    def encode(self, prompt: Prompt) -> list[int]:
        # A chat template writes its own special tokens; a plain prompt gets the
        # tokenizer's usual ones (e.g. BOS for Llama).
        text = self.render(prompt)
        return self.tokenizer(text, add_special_tokens=not self.chat_template)["input_ids"]

    async def generate(self, prompt: Prompt, **kwargs) -> Response:
        """Queue one prompt for the next batch and wait for its response."""
        settings = Generation.from_kwargs(kwargs, self.max_tokens)
        if not self.chat_template and not isinstance(prompt, str) and not settings.stop:
            settings = replace(settings, stop=(PLAIN_STOP,))
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Request(self.encode(prompt), settings, future))
        worker = self._worker
        if worker is None or worker.done() or worker.get_loop() is not future.get_loop():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        # Runs while requests are queued; each batch is computed in a worker thread, so
        # requests arriving meanwhile join the next batch.
        loop = asyncio.get_running_loop()
        while True:
            # Requests whose caller was cancelled are dropped, not computed.
            self._pending = [r for r in self._pending if not r.future.done()]
            if not self._pending:
                return
            settings = self._pending[0].settings
            batch = [r for r in self._pending if r.settings == settings][: self.batch_size]
            self._pending = [r for r in self._pending if r not in batch]
            try:
                responses = await loop.run_in_executor(
                    None, self._generate_batch, [r.ids for r in batch], settings
                )
            except Exception as err:
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(err)
                continue
            for request, response in zip(batch, responses):
                if not request.future.done():
                    request.future.set_result(response)

    @torch.inference_mode()
    def _generate_batch(self, prompts: list[list[int]], settings: Generation) -> list[Response]:
        width = max(map(len, prompts))
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention_mask[row, width - len(ids) :] = 1
        options = {"do_sample": False}
        if settings.temperature > 0:
            options = {"do_sample": True, "temperature": settings.temperature}
        if settings.stop:
            options["stopping_criteria"] = StoppingCriteriaList(
                [_StopStrings(self.tokenizer, settings.stop, width)]
            )
        out = self.lm.generate(
            input_ids=input_ids.to(self.lm.device),
            attention_mask=attention_mask.to(self.lm.device),
            max_new_tokens=settings.max_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids) or None,
            return_dict_in_generate=True,
            output_logits=settings.logprobs,
            **options,
        )
        new_tokens = out.sequences[:, width:]
        rows = [None] * len(prompts)
        if settings.logprobs:
            rows = _token_logprobs(out.logits, new_tokens, settings.top_logprobs)
        return [
            self._response(tokens, row, settings)
            for tokens, row in zip(new_tokens.tolist(), rows)
        ]

    def _response(
        self, tokens: list[int], steps: list[tuple] | None, settings: Generation
    ) -> Response:
        end = next((i for i, t in enumerate(tokens) if t in self.eos_ids), len(tokens))
        tokens = tokens[:end]
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = min((text.find(s) for s in settings.stop if s in text), default=len(text))
        if cut < len(text):
            text = text[:cut]
            # Keep the tokens that begin before the stop string.
            decode = self.tokenizer.decode
            starts = [len(decode(tokens[:i], skip_special_tokens=True)) for i in range(len(tokens))]
            tokens = [t for t, start in zip(tokens, starts) if start < cut]
        if steps is None:
            return Response(text=text)
        entries = [
            TokenLogprobs(
                token=self.tokenizer.decode([token]),
                logprob=logprob,
                top_logprobs=[TopLogprob(self.tokenizer.decode([i]), v) for i, v in top],
            )
            for token, (logprob, top) in zip(tokens, steps)
        ]
        return Response(text=text, logprobs=entries)


def _token_logprobs(logits: tuple[torch.Tensor, ...], tokens: torch.Tensor, k: int) -> list:
    """Per row, per step: (log-prob of the generated token, [(id, log-prob)] of the top k).

    From the raw logits, so the probabilities are the model's own, not temperature-scaled.
    """
    rows = [[] for _ in range(tokens.shape[0])]
    for step, step_logits in enumerate(logits):
        logprobs = step_logits.float().log_softmax(-1)
        chosen = logprobs.gather(1, tokens[:, step : step + 1])[:, 0].tolist()
        top = logprobs.topk(k) if k else None
        for row, logprob in enumerate(chosen):
            pairs = [] if top is None else zip(top.indices[row].tolist(), top.values[row].tolist())
            rows[row].append((logprob, list(pairs)))
    return rows


class _StopStrings(StoppingCriteria):
    """Stop each sequence once its decoded continuation contains a stop string.

    transformers' own `stop_strings` needs a tokenizer whose vocabulary it can
    re-derive token strings from, which fails for some tokenizers; decoding works
    for all of them.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: tuple[str, ...], start: int):
        self.tokenizer, self.stops, self.start = tokenizer, stops, start

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        done = [any(stop in text for stop in self.stops) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _first(*values):
    return next((v for v in values if v is not None), None)
