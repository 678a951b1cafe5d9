"""Delphi clients: LocalClient on a tiny random model, HTTPClient against a local server."""

import asyncio
import json
import logging
import math
import os
import socket
import time

import pytest
from local_server import Server, Silent, completion

pytest.importorskip("delphi")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from transcoders.autointerp.clients import (  # noqa: E402
    EndpointError,
    HTTPClient,
    LocalClient,
    make_client,
)
from transcoders.autointerp.delphi_compat import vllm_available  # noqa: E402
from transcoders.data import ModelLoadError  # noqa: E402

WORDS = ["<pad>", "<s>", "</s>", "<unk>", "0", "1", "[", "]", ",", ":"]
WORDS += ["system", "user", "assistant", "System", "User", "Assistant"]
WORDS += [f"w{i}" for i in range(128 - len(WORDS))]
TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant :{% endif %}"
)


@pytest.fixture(scope="module")
def tiny():
    """A random 2-layer Llama and a real word-level tokenizer with a chat template."""
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>",
    )
    tokenizer.chat_template = TEMPLATE
    config = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, vocab_size=len(WORDS), bos_token_id=1, eos_token_id=2,
        pad_token_id=0, initializer_range=0.5,  # peaked logits: no near-ties in argmax
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer


PROMPTS = [" ".join(f"w{j}" for j in range(i, 3 * i + 2)) for i in range(5)]


async def gather(client, prompts, **kwargs):
    return await asyncio.gather(*(client.generate(p, **kwargs) for p in prompts))


def test_local_batches_concurrent_requests(tiny, monkeypatch):
    model, tokenizer = tiny
    client = LocalClient(model, tokenizer, max_tokens=6)
    single = [asyncio.run(client.generate(p)) for p in PROMPTS]

    batch_sizes = []
    generate = model.generate

    def counting_generate(*args, **kwargs):
        batch_sizes.append(kwargs["input_ids"].shape[0])
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting_generate)
    batched = asyncio.run(gather(client, PROMPTS))
    assert batch_sizes == [len(PROMPTS)]
    # Left padding with an attention mask must not change greedy outputs.
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.text for r in batched)

    batch_sizes.clear()
    client.batch_size = 2
    asyncio.run(gather(client, PROMPTS))
    assert batch_sizes == [2, 2, 1]


def test_local_logprobs_match_the_model(tiny):
    model, tokenizer = tiny
    client = LocalClient(model, tokenizer, max_tokens=5)
    prompt = PROMPTS[2]
    response = asyncio.run(client.generate(prompt, logprobs=True, top_logprobs=4))
    assert asyncio.run(client.generate(prompt)).logprobs is None

    generated = response.text.split()
    assert [entry.token for entry in response.logprobs] == generated
    with torch.no_grad():
        ids = torch.tensor([client.encode(prompt)])
        first = model(ids).logits[0, -1].log_softmax(-1)
    assert response.logprobs[0].logprob == pytest.approx(first.max().item(), abs=1e-4)
    for entry in response.logprobs:
        top = [t.logprob for t in entry.top_logprobs]
        assert len(top) == 4 and top == sorted(top, reverse=True)
        assert entry.top_logprobs[0].token == entry.token  # greedy picks the top token
        assert entry.logprob == pytest.approx(top[0])
        assert all(v <= 0 for v in top) and sum(map(math.exp, top)) <= 1


def test_local_stop_string_cuts_text_and_logprobs(tiny, monkeypatch):
    model, tokenizer = tiny
    generated = []
    generate = model.generate

    def recording_generate(*args, **kwargs):
        out = generate(*args, **kwargs)
        generated.append(out.sequences.shape[1] - kwargs["input_ids"].shape[1])
        return out

    monkeypatch.setattr(model, "generate", recording_generate)
    client = LocalClient(model, tokenizer, max_tokens=6)
    full = asyncio.run(client.generate(PROMPTS[3])).text
    words = full.split()
    assert len(words) >= 3
    stop = " " + words[2]
    response = asyncio.run(client.generate(PROMPTS[3], stop=[stop], logprobs=True))
    assert response.text == full[: full.index(stop)]
    assert generated[-1] <= 3 < generated[0]  # generation itself stopped early
    assert [e.token for e in response.logprobs] == response.text.split()


def test_local_prompt_rendering(tiny):
    model, tokenizer = tiny
    messages = [{"role": "system", "content": "w1"}, {"role": "user", "content": "w2 w3"}]
    chat = LocalClient(model, tokenizer)
    assert chat.render(messages) == "<s> system : w1 </s> <s> user : w2 w3 </s> <s> assistant :"
    assert chat.render("w2") == "<s> user : w2 </s> <s> assistant :"
    plain = LocalClient(model, tokenizer, chat_template=False)
    assert plain.render(messages) == "System: w1\n\nUser: w2 w3\n\nAssistant:"
    assert plain.render("w2 w3") == "w2 w3"
    response = asyncio.run(plain.generate(messages, max_tokens=3))
    assert isinstance(response.text, str)


def test_local_rejects_bad_arguments(tiny):
    model, tokenizer = tiny
    client = LocalClient(model, tokenizer)
    with pytest.raises(TypeError, match="frequency_penalty"):
        asyncio.run(client.generate("w1", frequency_penalty=1.0))
    with pytest.raises(ValueError, match="tokenizer"):
        LocalClient(model)
    with pytest.raises(ModelLoadError, match="no-such-model"):
        LocalClient("/tmp/no-such-model")


def test_make_client_loads_a_local_directory(tiny, tmp_path):
    model, tokenizer = tiny
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    client = make_client(f"local:{tmp_path}", chat_template=False, max_tokens=3)
    assert isinstance(client, LocalClient) and not client.chat_template
    assert asyncio.run(client.generate(PROMPTS[1])).text == asyncio.run(
        LocalClient(model, tokenizer, chat_template=False, max_tokens=3).generate(PROMPTS[1])
    ).text


# --- HTTP -------------------------------------------------------------------------

SECRET = "sk-test-5ecret-never-logged-0123456789"
KEY_ENV = "TRANSCODERS_TEST_API_KEY"


@pytest.fixture
def server():
    server = Server()
    yield server
    server.close()


def http_client(server, **kwargs):
    kwargs = {"api_key_env": KEY_ENV, "backoff_s": 0.01, **kwargs}
    return HTTPClient("test-model", server.url, **kwargs)


def test_http_success(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    server.script = [completion("The answer.")]
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    response = asyncio.run(http_client(server).generate(messages, temperature=0.0, seed=3))
    assert response.text == "The answer." and response.logprobs is None
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert request["json"]["model"] == "test-model"
    assert request["json"]["messages"] == messages
    assert request["json"]["temperature"] == 0.0 and request["json"]["seed"] == 3
    assert "logprobs" not in request["json"]

    asyncio.run(http_client(server).generate("just text"))
    assert server.requests[1]["json"]["messages"] == [{"role": "user", "content": "just text"}]


def test_http_without_key_sends_no_authorization(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    asyncio.run(http_client(server).generate("x"))
    assert "Authorization" not in server.requests[0]["headers"]


def test_http_logprobs_feed_delphis_scorer(server):
    from delphi.scorers import DetectionScorer

    def entry(token, top):
        return {"token": token, "logprob": top[token],
                "top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()]}

    tokens = [
        entry("[", {"[": -0.01}),
        entry("1", {"1": -0.2, "0": -1.8}),
        entry(",", {",": -0.01}),
        entry("0", {"0": -0.1, "1": -2.4}),
        entry("]", {"]": -0.01}),
    ]
    server.script = [completion("[1,0]", tokens)]
    client = http_client(server)
    response = asyncio.run(client.generate("judge", logprobs=True, top_logprobs=5))
    body = server.requests[0]["json"]
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert [e.token for e in response.logprobs] == ["[", "1", ",", "0", "]"]

    scorer = DetectionScorer(client, n_examples_shown=2, log_prob=True)
    predictions, probabilities = scorer._parse(response.text, response.logprobs)
    p1 = 1 / (1 + torch.exp(torch.tensor(-1.8 + 0.2)).item())
    p2 = 1 / (1 + torch.exp(torch.tensor(-0.1 + 2.4)).item())
    assert predictions == [True, False]
    assert probabilities == pytest.approx([p1, p2], abs=1e-6)


def test_http_retries_429_and_500_then_succeeds(server, caplog):
    server.script = [
        (429, {"Retry-After": "0"}, '{"error": "slow down"}'),
        (500, {}, '{"error": "boom"}'),
        completion("finally"),
    ]
    with caplog.at_level(logging.WARNING):
        response = asyncio.run(http_client(server).generate("x"))
    assert response.text == "finally"
    assert len(server.requests) == 3
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and "HTTP 429" in retries[0] and "HTTP 500" in retries[1]
    assert server.url in retries[0]


def test_http_honours_retry_after(server):
    server.script = [(429, {"Retry-After": "1"}, "{}"), completion("ok")]
    start = time.monotonic()
    assert asyncio.run(http_client(server, backoff_s=0.001).generate("x")).text == "ok"
    assert time.monotonic() - start >= 1.0


def test_http_gives_up_with_exponential_backoff(server):
    server.script = [(503, {}, '{"error": "overloaded"}')]
    start = time.monotonic()
    with pytest.raises(EndpointError) as err:
        asyncio.run(http_client(server, max_retries=3, backoff_s=0.05).generate("x"))
    elapsed = time.monotonic() - start
    assert len(server.requests) == 4
    assert elapsed >= 0.05 + 0.1 + 0.2
    message = str(err.value)
    assert f"{server.url}/chat/completions" in message
    assert "4 attempts" in message and "HTTP 503" in message


def test_http_client_errors_are_not_retried(server):
    server.script = [(400, {}, '{"error": "bad request"}')]
    with pytest.raises(EndpointError, match="refused the request.*HTTP 400"):
        asyncio.run(http_client(server).generate("x"))
    assert len(server.requests) == 1


def test_http_malformed_replies(server):
    server.script = [(200, {}, "not json"), completion("fine")]
    assert asyncio.run(http_client(server).generate("x")).text == "fine"
    server.script = [(200, {}, '{"unexpected": 1}')]
    with pytest.raises(EndpointError, match="without choices"):
        asyncio.run(http_client(server).generate("x"))


def test_http_unreachable_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HTTPClient("m", f"http://127.0.0.1:{port}/v1", max_retries=2, backoff_s=0.01)
    with pytest.raises(EndpointError) as err:
        asyncio.run(client.generate("x"))
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in str(err.value)
    assert "3 attempts" in str(err.value) and "ConnectError" in str(err.value)


@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.close()


def test_http_endpoint_that_never_answers_fails_within_the_worst_case(silent):
    client = HTTPClient("m", silent.url, timeout_s=0.3, max_retries=2, backoff_s=0.1)
    assert client.worst_case_s() == pytest.approx(3 * 0.3 + 0.1 + 0.2)
    start = time.monotonic()
    with pytest.raises(EndpointError, match=r"3 attempts.*no answer within 0.3 s.*--timeout"):
        asyncio.run(client.generate("x"))
    elapsed = time.monotonic() - start
    assert client.worst_case_s() - 0.05 <= elapsed <= client.worst_case_s() + 2
    assert len(silent.accepted) >= 1  # it did connect: the timeout was on the answer


def test_http_default_worst_case_is_about_a_minute():
    assert 30 <= HTTPClient("m", "http://127.0.0.1:1/v1").worst_case_s() <= 65


def test_http_key_never_in_logs_or_errors(server, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, SECRET)

    def echo(headers):
        return json.dumps({"error": f"bad key {headers['Authorization']}"})

    client = http_client(server, max_retries=1)
    server.script = [(500, {}, echo), (401, {}, echo)]
    with caplog.at_level(logging.DEBUG), pytest.raises(EndpointError) as err:
        asyncio.run(client.generate("x"))
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert "API key redacted" in str(err.value) and KEY_ENV in str(err.value)
    assert "API key redacted" in caplog.text  # the retried 500 was logged, redacted
    for text in (str(err.value), repr(err.value), caplog.text, repr(client), str(client)):
        assert SECRET not in text
    assert SECRET not in repr(vars(client))


def test_make_client_specs(monkeypatch):
    client = make_client("http://127.0.0.1:8000/v1@org/model-7b", max_retries=0)
    assert isinstance(client, HTTPClient) and client.model == "org/model-7b"
    assert client.url == "http://127.0.0.1:8000/v1/chat/completions"
    with pytest.raises(ValueError, match="@<model>"):
        make_client("http://127.0.0.1:8000/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        make_client("openai:gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    assert make_client("openai:gpt-4o-mini").url == "https://api.openai.com/v1/chat/completions"
    with pytest.raises(ValueError, match="Unknown client"):
        make_client("carrier-pigeon:model")
    with pytest.raises(ValueError, match="Unknown client"):
        make_client("embedded")
    if not vllm_available():
        with pytest.raises(ImportError, match=r"transcoders\[gpu\]"):
            make_client("vllm:some/model")
