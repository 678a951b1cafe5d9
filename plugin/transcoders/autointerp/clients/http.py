"""A Delphi client for OpenAI-compatible chat-completion endpoints.

Works with a local vLLM (`vllm serve MODEL`) or llama.cpp (`llama-server`) server and
with hosted APIs. The API key is read from an environment variable; it is sent only
in the Authorization header and is redacted from every error message.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import time

import httpx

from ...errors import UserError
from ..delphi_compat import import_delphi
from .base import Generation, Prompt, TokenLogprobs, TopLogprob, as_messages

import_delphi()
from delphi.clients.client import Client, Response  # noqa: E402

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429} | set(range(500, 600))
GENERATION_ARGS = {
    "max_tokens", "max_new_tokens", "temperature", "logprobs", "top_logprobs", "stop"
}


class EndpointError(UserError, RuntimeError):
    """The endpoint failed for good: unreachable, rate-limited past the retries, or refused."""


class HTTPClient(Client):
    """POST `{base_url}/chat/completions` with retries and exponential backoff.

    Connection errors, timeouts, 408/409/429 and 5xx are retried after
    `backoff_s * 2**attempt` seconds, or after the server's Retry-After, at most
    `max_backoff_s`; other errors fail at once. A dead endpoint fails after at most
    `worst_case_s()` seconds. Extra `generate` keyword arguments (e.g.
    `top_p`, `seed`) are passed through in the request body.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_tokens: int = 1024,
        timeout_s: float = 20.0,
        max_retries: int = 2,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
    ):
        """
        Args:
            model: Model name as the server knows it.
            base_url: API root, e.g. `http://127.0.0.1:8000/v1`.
            api_key_env: NAME of the environment variable holding the API key. When it
                is unset no Authorization header is sent (typical for local servers).
            max_tokens: Default completion length when a request does not say.
            timeout_s: Most seconds one attempt may take, connecting to last byte.
            max_retries: Retries after the first attempt before giving up.
            backoff_s, max_backoff_s: First and largest wait between attempts.
        """
        super().__init__(model)
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self._warned_logprobs = False

    def worst_case_s(self) -> float:
        """Longest a request to an endpoint that never answers takes to fail: every
        attempt runs to its timeout, with the backoff waits between them."""
        waits = sum(min(self.max_backoff_s, self.backoff_s * 2**a) for a in range(self.max_retries))
        return (self.max_retries + 1) * self.timeout_s + waits

    def __repr__(self) -> str:
        return f"HTTPClient({self.model!r}, url={self.url!r}, api_key_env={self.api_key_env!r})"

    async def generate(self, prompt: Prompt, **kwargs) -> Response:
        """One chat completion; `logprobs`/`top_logprobs` are passed to the server."""
        known = {k: kwargs.pop(k) for k in list(kwargs) if k in GENERATION_ARGS}
        settings = Generation.from_kwargs(known, self.max_tokens)
        body = {
            **kwargs,
            "model": self.model,
            "messages": as_messages(prompt),
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
        }
        if settings.stop:
            body["stop"] = list(settings.stop)
        if settings.logprobs:
            body["logprobs"] = True
            if settings.top_logprobs:
                body["top_logprobs"] = settings.top_logprobs
        return self._parse(await self._post(body), settings)

    async def _post(self, body: dict) -> dict:
        key = os.environ.get(self.api_key_env) or None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        http = self._client()
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            wait = min(self.max_backoff_s, self.backoff_s * 2**attempt)
            try:
                # httpx's timeouts bound each read, so a server trickling bytes could
                # hold an attempt longer; wait_for bounds the whole attempt.
                response = await asyncio.wait_for(
                    http.post(self.url, json=body, headers=headers), self.timeout_s
                )
            except (httpx.TimeoutException, TimeoutError):
                problem = f"no answer within {self.timeout_s:g} s"
            except httpx.TransportError as err:
                problem = f"{type(err).__name__}: {err}"
            else:
                if response.is_success:
                    try:
                        return response.json()
                    except ValueError:
                        problem = f"invalid JSON: {response.text[:200]!r}"
                else:
                    problem = f"HTTP {response.status_code}: {response.text[:300]!r}"
                    if response.status_code not in RETRY_STATUS:
                        raise EndpointError(self._redact(self._refusal(problem, response)))
                    retry_after = _retry_after(response)
                    if retry_after is not None:
                        wait = min(self.max_backoff_s, retry_after)
            problem = self._redact(problem)
            if attempt + 1 < attempts:
                log.warning(
                    "%s: attempt %d/%d failed (%s); retrying in %.2f s",
                    self.url, attempt + 1, attempts, problem, wait,
                )
                await asyncio.sleep(wait)
        raise EndpointError(
            f"Gave up on {self.url} after {attempts} attempts; last error: {problem} "
            "(a slow server needs a larger --timeout or --retries)"
        )

    def _refusal(self, problem: str, response: httpx.Response) -> str:
        message = f"{self.url} refused the request for model {self.model!r}: {problem}"
        if response.status_code in (401, 403):
            state = "is set" if os.environ.get(self.api_key_env) else "is not set"
            message += f". Check the API key in ${self.api_key_env} (it {state})."
        return message

    def _client(self) -> httpx.AsyncClient:
        # An httpx client is bound to the event loop it first ran in; Delphi's sync
        # helpers start a fresh loop per call, so keep one client per loop.
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            self._http = httpx.AsyncClient(timeout=self.timeout_s)
            self._http_loop = loop
        return self._http

    async def close(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _parse(self, payload: dict, settings: Generation) -> Response:
        try:
            choice = payload["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as err:
            raise EndpointError(
                self._redact(
                    f"{self.url} answered without choices[0].message.content: "
                    f"{str(payload)[:300]}"
                )
            ) from err
        if not settings.logprobs:
            return Response(text=text)
        content = (choice.get("logprobs") or {}).get("content")
        if content is None:
            if not self._warned_logprobs:
                log.warning("%s returned no logprobs although they were requested", self.url)
                self._warned_logprobs = True
            return Response(text=text)
        entries = [
            TokenLogprobs(
                token=item["token"],
                logprob=item["logprob"],
                top_logprobs=[
                    TopLogprob(top["token"], top["logprob"])
                    for top in item.get("top_logprobs") or []
                ],
            )
            for item in content
        ]
        return Response(text=text, logprobs=entries)

    def _redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "[API key redacted]") if key else text


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
