"""Prompts of a requested token length without a tokenizer, and the reachability probe.

Prompts are seeded random common English words, different for every request (request ``i``
draws from ``numpy.random.default_rng([seed, i])``), so an engine's prefix cache never
shortens a prefill and TTFT measures the whole prompt. No tokenizer is available offline, so
the server measures for us: two probe requests (``max_tokens=1``, not streamed) of
``PROBE_WORDS`` words return ``usage.prompt_tokens`` and the fit
``prompt_tokens = a + b x words`` (``a`` = chat template and special tokens, ``b`` = tokens per
word) sizes the prompts to the asked input length.

The probe also checks the endpoint: an unreachable server, a wrong model name, a path that
is not an OpenAI-compatible API or a server that reports no usage raise
:class:`EndpointError` with one line that names the endpoint and the likely fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from kvopt.errors import KvoptError

# common English words that BPE tokenizers (Llama, Qwen, GPT) keep as one token each
_WORDS = """the of and to in is was for on that with as by at from his her they this
which are have had not but one all were when there their been can more who said will would
out what about into time than them some could two only other then new like first these may
its over also after people any most such how made many well back water years way where
before our long very great day just own work good life world still under last being state
since place city small house part found while high later end home both every three school
group left near light power point right game head hand name book road music story river
field army kind land side war order open air plan form line cold fire"""
VOCAB = tuple(_WORDS.split())
PROBE_WORDS = (32, 160)
TARGET_PROBES = 8  # prompts of the planned size whose mean re-centres the fit there
PROBE_INDEX = 2**40  # probe prompts use request indices no run reaches


class EndpointError(KvoptError):
    """The endpoint cannot run the benchmark (unreachable, wrong model, not OpenAI-compatible,
    no usage); the message names the endpoint and the likely fix."""


@dataclass(frozen=True, kw_only=True)
class PromptFit:
    """``prompt_tokens = a_tokens + b_tokens_per_word x words``: the slope from two probes
    of 32 and 160 words, the intercept re-centred on the mean of :data:`TARGET_PROBES`
    prompts of the planned size (random words tokenize unevenly, so a line through two
    single prompts can miss short prompts by 10%)."""

    a_tokens: float
    b_tokens_per_word: float
    probe_words: tuple[int, int]
    probe_tokens: tuple[int, int]
    target_words: int | None = None
    target_tokens_mean: float | None = None

    def words_for(self, input_len: int) -> int:
        """Words per prompt so that the server counts ``input_len`` prompt tokens (>= 1)."""
        return max(1, round((input_len - self.a_tokens) / self.b_tokens_per_word))

    def to_dict(self) -> dict[str, Any]:
        return {"a_tokens": self.a_tokens, "b_tokens_per_word": self.b_tokens_per_word,
                "probe_words": list(self.probe_words), "probe_tokens": list(self.probe_tokens),
                "target_words": self.target_words,
                "target_tokens_mean": self.target_tokens_mean}


def make_prompt(*, seed: int, index: int, words: int) -> str:
    """Prompt ``index`` of a run: ``words`` seeded random words (same seed, same prompt)."""
    rng = np.random.default_rng([seed, index])
    return " ".join(VOCAB[i] for i in rng.integers(0, len(VOCAB), size=words))


def request_body(*, api: str, model: str, prompt: str, max_tokens: int,
                 stream: bool) -> dict[str, Any]:
    """OpenAI request body; streamed requests ask for exactly ``max_tokens`` tokens
    (``ignore_eos`` and ``min_tokens``, vLLM/SGLang extensions) and usage in the last chunk."""
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "stream": stream}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if stream:
        body.update(min_tokens=max_tokens, ignore_eos=True,
                    stream_options={"include_usage": True})
    return body


def api_url(endpoint: str, api: str) -> str:
    return endpoint.rstrip("/") + ("/chat/completions" if api == "chat" else "/completions")


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _server_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return _one_line(resp.text) or resp.reason_phrase
    err = data.get("error") if isinstance(data, dict) else None
    msg = err.get("message") if isinstance(err, dict) else None
    msg = msg or (data.get("message") if isinstance(data, dict) else None) or err or data
    return _one_line(str(msg))


async def _served_models(client: httpx.AsyncClient, endpoint: str) -> list[str] | None:
    """Model ids from ``GET {endpoint}/models``, or None when that is not an OpenAI list."""
    try:
        resp = await client.get(endpoint.rstrip("/") + "/models")
        data = resp.json() if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        return None
    return [str(m.get("id")) for m in data["data"] if isinstance(m, dict)]


async def _http_error(client: httpx.AsyncClient, resp: httpx.Response, *, endpoint: str,
                      model: str, api: str) -> EndpointError:
    url, code, msg = str(resp.request.url), resp.status_code, _server_message(resp)
    if code == 404:
        served = await _served_models(client, endpoint)
        if served is None:
            return EndpointError(
                f"{url} answered HTTP 404 and {endpoint.rstrip('/')}/models lists no models: "
                f"{endpoint} is not an OpenAI-compatible API base (it usually ends in /v1, "
                "e.g. http://127.0.0.1:8000/v1)")
        if model not in served:
            return EndpointError(
                f"model {model!r} is not served at {endpoint} (it serves: "
                f"{', '.join(served) or 'nothing'}); use --model {served[0] if served else ''}"
                .rstrip())
        other = "completions" if api == "chat" else "chat"
        return EndpointError(f"{url} answered HTTP 404 ({msg}): the server does not offer the "
                             f"{api} API for {model!r}; try --api {other}")
    if code in (401, 403):
        return EndpointError(f"{endpoint} refused the request (HTTP {code}: {msg}); give an "
                             "API key with --api-key or OPENAI_API_KEY")
    return EndpointError(f"{url} answered HTTP {code} to a 1-token probe: {msg}")


async def _probe_once(client: httpx.AsyncClient, *, endpoint: str, model: str, api: str,
                      prompt: str, timeout_s: float) -> int:
    url = api_url(endpoint, api)
    body = request_body(api=api, model=model, prompt=prompt, max_tokens=1, stream=False)
    try:
        resp = await client.post(url, json=body, timeout=timeout_s)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        why = _one_line(str(exc), 80) or type(exc).__name__
        raise EndpointError(f"cannot connect to {endpoint} ({why}): is the server running, "
                            "and are the host and port right?") from None
    except httpx.TimeoutException:
        raise EndpointError(f"{endpoint} did not answer a 1-token probe within {timeout_s:g} "
                            "s: is it still loading the model? (raise --request-timeout-s)"
                            ) from None
    except httpx.HTTPError as exc:
        raise EndpointError(f"{url}: {type(exc).__name__}: {_one_line(str(exc), 80)} (is "
                            f"{endpoint} an HTTP OpenAI-compatible API base?)") from None
    if resp.status_code != 200:
        raise await _http_error(client, resp, endpoint=endpoint, model=model, api=api)
    try:
        tokens = resp.json()["usage"]["prompt_tokens"]
    except (ValueError, KeyError, TypeError):
        raise EndpointError(
            f"{url} did not answer like an OpenAI-compatible server (expected JSON with "
            f"usage.prompt_tokens, got: {_one_line(resp.text, 80)!r}); kvopt bench counts "
            "tokens from the server's usage") from None
    if not isinstance(tokens, int) or tokens < 1:
        raise EndpointError(f"{url} reported usage.prompt_tokens={tokens!r}; kvopt bench "
                            "needs the server's token counts")
    return tokens


async def probe(client: httpx.AsyncClient, *, endpoint: str, model: str, api: str, seed: int,
                timeout_s: float, input_len: int | None = None) -> PromptFit:
    """Send the two probes and fit prompt tokens per word, then (with ``input_len``) probe
    prompts of the planned size and re-centre the intercept on their mean; EndpointError
    on any problem."""
    w1, w2 = PROBE_WORDS
    counts = []
    for k, words in enumerate(PROBE_WORDS):  # indices apart from the run's prompts
        prompt = make_prompt(seed=seed, index=PROBE_INDEX + k, words=words)
        counts.append(await _probe_once(client, endpoint=endpoint, model=model, api=api,
                                        prompt=prompt, timeout_s=timeout_s))
    p1, p2 = counts
    b = (p2 - p1) / (w2 - w1)
    if b <= 0:
        raise EndpointError(f"{endpoint} counted {p1} prompt tokens for {w1} words and {p2} "
                            f"for {w2}: its usage.prompt_tokens does not follow the prompt")
    fit = PromptFit(a_tokens=p1 - b * w1, b_tokens_per_word=b, probe_words=(w1, w2),
                    probe_tokens=(p1, p2))
    if input_len is None:
        return fit
    words = fit.words_for(input_len)
    seen = [await _probe_once(client, endpoint=endpoint, model=model, api=api,
                              prompt=make_prompt(seed=seed, index=PROBE_INDEX + 2 + k,
                                                 words=words), timeout_s=timeout_s)
            for k in range(TARGET_PROBES)]
    mean = sum(seen) / len(seen)
    return PromptFit(a_tokens=mean - b * words, b_tokens_per_word=b, probe_words=(w1, w2),
                     probe_tokens=(p1, p2), target_words=words, target_tokens_mean=mean)
