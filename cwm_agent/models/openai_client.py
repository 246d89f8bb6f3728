"""OpenAIModel: any OpenAI-compatible server (vLLM, SGLang, llama.cpp, OpenAI) via the SDK.

Requests go through the client's low-level ``post()``: it keeps the SDK's auth,
retries with backoff (429/5xx/timeouts/connection errors, honouring Retry-After)
and error types, but skips ``chat.completions.create``'s per-call transform of
the whole message list, whose cost grows with the conversation.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import ContextLengthError, CwmError, ModelError
from ..redaction import url_without_credentials
from ..types import ModelReply, ToolCall, Usage
from . import logprobs as token_logprobs
from .abandon import Lane

if TYPE_CHECKING:
    import openai

# How servers word "the prompt does not fit": vLLM, SGLang, llama.cpp, OpenAI, TGI.
_CONTEXT_RE = re.compile(
    r"context.length|maximum context|context size|context window|too many tokens"
    r"|prompt is too long|input is too long|exceeds? the (?:model'?s? )?(?:max|context)",
    re.IGNORECASE,
)
_CHAT_ONLY_KEYS = ("chat_template_kwargs",)  # extra_body keys /v1/completions must not get
_RETRY_COUNT = "x-stainless-retry-count"  # the SDK numbers each request's retry in this header


class _BadReply(ValueError):
    """A 200 whose body is JSON but not a usable reply (content a number, usage not counts)."""


class OpenAIModel:
    """Satisfies ``types.Model``. One persistent client per instance (connection reuse)."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        temperature: float = 1.0,
        top_p: float = 0.95,
        max_tokens: int | None = None,
        timeout: float = 600,
        max_retries: int = 4,
        extra_body: dict[str, Any] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        import openai  # lazy: importing the SDK costs ~0.5 s, `import cwm_agent` must not

        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.extra_body = dict(extra_body or {})
        self.stop = stop  # a run on a worker thread is stopped through it (abandon.py)
        self._lane = Lane() if stop is not None else None
        # Local servers need no key; the SDK refuses to start without one. The key
        # lives only inside the SDK client, never on this object or in messages.
        self._client: openai.OpenAI = openai.OpenAI(
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none",
            base_url=self.base_url,
            timeout=timeout,
            max_retries=max_retries,
        )
        self._key_source = (
            "a key was passed explicitly"
            if api_key
            else "OPENAI_API_KEY is set"
            if os.environ.get("OPENAI_API_KEY")
            else "OPENAI_API_KEY is not set"
        )

    def __repr__(self) -> str:
        return f"OpenAIModel(model={self.model!r}, base_url={self.base_url_shown!r})"

    def close(self) -> None:
        self._client.close()

    @property
    def base_url_shown(self) -> str:
        """The base URL without credentials, for messages."""
        return self._url("")

    def served_models(self) -> list[str]:
        """The ids GET /models lists (the SDK's exceptions propagate: `doctor` words them)."""
        return [model.id for model in self._client.models.list().data]

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        max_tokens: int | None = None,
        logprobs: int | None = None,
    ) -> ModelReply:
        """One chat completion. ``finish_reason == "length"`` is returned, not raised.

        ``max_tokens`` overrides the constructor's limit for this call (the agent shrinks it
        as the context fills, so prompt plus reply never exceed the server's window).
        ``logprobs``: ask for each token's log-probability and this many alternatives.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }
        limit = max_tokens if max_tokens is not None else self.max_tokens
        if limit is not None:
            body["max_tokens"] = limit
        if tools:
            # tool_choice is left to the server ("auto" on OpenAI and vLLM). Setting it makes
            # llama.cpp's function-calling formats emit grammar-constrained calls, and a weak
            # model then never closes its JSON: replies that run until the request times out.
            body["tools"] = tools
        if logprobs is not None:
            body.update(logprobs=True, top_logprobs=logprobs)
        body.update(self.extra_body)
        return self._request("/chat/completions", body, _parse_chat)

    def complete_text(
        self,
        prompt: str,
        *,
        stop: list[str] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        logprobs: int | None = None,
    ) -> ModelReply:
        """One raw ``/v1/completions`` call (special tokens in the prompt, for traces)."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt,
            "temperature": self.temperature if temperature is None else temperature,
            "top_p": self.top_p,
        }
        if stop:
            body["stop"] = stop
        limit = max_tokens if max_tokens is not None else self.max_tokens
        if limit is not None:
            body["max_tokens"] = limit
        if logprobs is not None:
            body["logprobs"] = logprobs
        body.update({k: v for k, v in self.extra_body.items() if k not in _CHAT_ONLY_KEYS})
        return self._request("/completions", body, _parse_text)

    def _request(self, path: str, body: dict[str, Any], parse: Any) -> ModelReply:
        try:
            return self._send(path, body, parse)
        except CwmError as exc:  # a server may echo the key back in its error text
            raise _redacted(exc, self._client.api_key) from None

    def _send(self, path: str, body: dict[str, Any], parse: Any) -> ModelReply:
        import openai

        url = self._url(path)
        start = time.monotonic()
        # The SDK retries transport and status failures itself. A 200 whose body is
        # unusable (not JSON, no choices) gets one more try: a proxy hiccup is cheap
        # to retry, and a wrong base URL fails the same way twice.
        tries = 2 if self.max_retries > 0 else 1
        for _ in range(tries):
            try:
                data = self._post(path, body)
            except openai.APIStatusError as exc:
                raise self._status_error(exc, url) from None
            except openai.APITimeoutError as exc:
                raise ModelError(
                    f"No reply from {url} within {self.timeout:g} s "
                    f"({self._attempts(exc.request)} attempts).",
                    "The server may be overloaded or the reply too long: check the server log, "
                    "or raise the model timeout.",
                ) from None
            except openai.APIConnectionError as exc:
                cause = exc.__cause__ or exc
                raise ModelError(
                    f"Could not reach the model server at {url} "
                    f"({self._attempts(exc.request)} attempts): {type(cause).__name__}: {cause}",
                    "Check --base-url (it usually ends in /v1) and that the server is running.",
                ) from None
            except json.JSONDecodeError as exc:  # 200, application/json, but not JSON
                problem = f"the reply body is not valid JSON ({exc})"
            else:
                if isinstance(data, dict) and not data.get("choices"):
                    _raise_embedded_error(data, url)
                    problem = f"the reply has no choices: {json.dumps(data)[:200]}"
                elif isinstance(data, dict):
                    try:
                        reply = parse(data)
                    except _BadReply as exc:
                        problem = str(exc)
                    except (KeyError, IndexError, TypeError, AttributeError) as exc:
                        problem = f"the reply has an unexpected shape ({type(exc).__name__}: {exc})"
                    else:
                        return replace(reply, latency=time.monotonic() - start)
                else:
                    problem = f"the reply is not a JSON object: {str(data)[:200]!r}"
        raise ModelError(
            f"Bad reply from {url} ({tries} attempt(s)): {problem}.",
            "Check that --base-url points at an OpenAI-compatible API (usually ending in /v1) "
            f"serving model {self.model!r}, and look at the server log.",
        )

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        """The SDK's request (its retries included); with ``stop``, on a thread of its own,
        given up (KeyboardInterrupt: the agent's interrupt path) once ``stop()`` is true."""
        if self.stop is None or self._lane is None:
            return self._client.post(path, body=body, cast_to=object)
        return self._lane.run(lambda: self._client.post(path, body=body, cast_to=object), self.stop)

    def _attempts(self, request: Any) -> int:
        """Requests the SDK actually sent (it may give up early, e.g. on a long Retry-After)."""
        try:
            return int(request.headers[_RETRY_COUNT]) + 1
        except (AttributeError, KeyError, TypeError, ValueError):
            return self.max_retries + 1

    def _url(self, path: str) -> str:
        """The endpoint URL without credentials, for messages."""
        return url_without_credentials(str(self._client.base_url)).rstrip("/") + path

    def _status_error(self, exc: openai.APIStatusError, url: str) -> Exception:
        status = exc.status_code
        server_msg = _server_message(exc.body) or exc.response.text[:500]
        what = f"HTTP {status} from {url}: {server_msg}"
        if status in (400, 413, 422) and _CONTEXT_RE.search(server_msg):
            return ContextLengthError(
                f"The conversation no longer fits the model's context ({what})",
                "Lower --max-context (or --max-steps) or serve the model with a longer context.",
            )
        if status in (401, 403):
            return ModelError(
                f"The server refused the credentials ({what}).",
                f"Set OPENAI_API_KEY to a key this server accepts ({self._key_source}); "
                "local vLLM/llama.cpp servers started without --api-key need none.",
            )
        if status == 404:
            return ModelError(
                f"Not found ({what}).",
                f"Check --base-url (usually ending in /v1) and that the server serves model "
                f"{self.model!r} (GET {self._url('/models')} lists them).",
            )
        retried = status in (408, 409, 429) or status >= 500
        retried = retried and exc.response.headers.get("x-should-retry") != "false"
        attempts = self._attempts(exc.response.request) if retried else 1
        message = f"Model request failed after {attempts} attempt(s): {what}"
        wait = _retry_after(exc.response.headers)
        if wait:
            message += f"; the server asked to wait {_duration(wait)} before trying again"
            if retried and attempts < self.max_retries + 1:
                message += ", longer than the SDK waits, so it did not retry"
        if status == 429:
            asked = f" and asks to wait {_duration(wait)}: run again after that" if wait else ""
            hint = f"The server is rate limiting{asked or ': wait'}, or run fewer workers."
        elif status >= 500:
            hint = "The server failed or is overloaded: check the server log, then run again."
        else:
            hint = (
                "Check the server log; the model name and request options may be wrong "
                "for this server (check --model and --base-url)."
            )
        return ModelError(message, hint)


def _retry_after(headers: Any) -> float | None:
    """The wait a Retry-After (or retry-after-ms) header asks for, in seconds."""
    for name, unit in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        try:
            seconds = float(value) * unit
        except (TypeError, ValueError):
            continue
        return seconds if math.isfinite(seconds) else None
    try:  # the HTTP-date form
        when = email.utils.parsedate_to_datetime(headers.get("retry-after") or "")
        return when.timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None


def _duration(seconds: float) -> str:
    text = f"{seconds:.3g} s" if seconds < 100 else f"{seconds:.0f} s"
    if seconds >= 7200:
        text += f" (about {seconds / 3600:.0f} h)"
    elif seconds >= 120:
        text += f" (about {seconds / 60:.0f} min)"
    return text


def _server_message(body: object) -> str:
    """The human message in an error body, across servers' shapes."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            for key in ("message", "detail", "msg"):
                if err.get(key):
                    return str(err[key])
        elif isinstance(err, str):
            return err
        for key in ("message", "detail"):
            if body.get(key):
                return str(body[key])
        return json.dumps(body)[:500]
    return "" if body is None else str(body)[:500]


def _raise_embedded_error(data: dict[str, Any], url: str) -> None:
    """Some proxies answer 200 with ``{"error": ...}`` and no choices."""
    if not data.get("error"):
        return
    message = _server_message(data)
    if _CONTEXT_RE.search(message):
        raise ContextLengthError(
            f"The conversation no longer fits the model's context ({url}: {message})",
            "Lower --max-context (or --max-steps) or serve the model with a longer context.",
        )
    raise ModelError(f"The server at {url} returned an error: {message}", "Check the server log.")


def _usage(data: dict[str, Any]) -> Usage:
    usage = data.get("usage") or {}
    if not isinstance(usage, dict):
        raise _BadReply(f"the reply's usage is not an object of token counts: {_shown(usage)}")
    prompt = _count(usage, "prompt_tokens")
    return Usage(prompt, _count(usage, "completion_tokens"), min(_cached(usage), prompt))


def _cached(usage: dict[str, Any]) -> int:
    """Prompt tokens served from the server's cache (OpenAI's and vLLM's
    ``prompt_tokens_details.cached_tokens``). Optional and only a price detail: a shape
    that cannot be read counts as none rather than failing the reply."""
    details = usage.get("prompt_tokens_details")
    if not isinstance(details, dict):
        return 0
    try:
        return _count(details, "cached_tokens")
    except _BadReply:
        return 0


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        if float(value).is_integer():
            return int(value)
    raise _BadReply(f"the reply's usage.{key} is not a token count: {_shown(value)}")


def _text(value: Any, field: str) -> str:
    """A reply field as text: a string, or the OpenAI schema's list of content parts joined."""
    if value is None or isinstance(value, str):
        return value or ""
    if not isinstance(value, list):
        raise _BadReply(f"the reply's {field} is {_kind(value)}, not text: {_shown(value)}")
    pieces = []
    for part in value:
        kind = part.get("type", "text") if isinstance(part, dict) else None
        piece = part.get("refusal" if kind == "refusal" else "text") if kind else part
        if kind not in (None, "text", "output_text", "refusal") or not isinstance(piece, str):
            raise _BadReply(f"the reply's {field} holds a part that is not text: {_shown(part)}")
        pieces.append(piece)
    return "".join(pieces)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, (int, float)) else f"a JSON {type(value).__name__}"


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 100 else text[:100] + "..."


def _parse_chat(data: dict[str, Any]) -> ModelReply:
    choice = data["choices"][0]
    message = choice.get("message") or {}
    calls = []
    for i, call in enumerate(message.get("tool_calls") or ()):
        fn = call.get("function") or {}
        name, args = fn.get("name") or "", fn.get("arguments")
        if not isinstance(name, str):
            raise _BadReply(f"a tool call's name is not a string: {_shown(name)}")
        args = args if isinstance(args, str) else json.dumps(args or {})
        calls.append(ToolCall(id=str(call.get("id") or f"call_{i}"), name=name, arguments=args))
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    return ModelReply(
        content=_text(message.get("content"), "content"),
        tool_calls=tuple(calls),
        reasoning=_text(reasoning, "reasoning"),
        usage=_usage(data),
        finish_reason=_finish(choice),
        logprobs=token_logprobs.from_chat(choice),
    )


def _parse_text(data: dict[str, Any]) -> ModelReply:
    choice = data["choices"][0]
    return ModelReply(
        content=_text(choice.get("text"), "text"),
        usage=_usage(data),
        finish_reason=_finish(choice),
        logprobs=token_logprobs.from_text(choice),
    )


def _finish(choice: dict[str, Any]) -> str | None:
    reason = choice.get("finish_reason")
    return None if reason is None else str(reason)


def _redacted(exc: CwmError, key: str | None) -> CwmError:
    """``exc`` with every occurrence of the API key replaced, so no message carries it."""
    if not key or len(key) < 8:  # "none" and other placeholders are not secrets
        return exc
    mark = "[API key redacted]"
    exc.message = exc.message.replace(key, mark)
    exc.hint = exc.hint.replace(key, mark)
    exc.args = tuple(a.replace(key, mark) if isinstance(a, str) else a for a in exc.args)
    return exc
