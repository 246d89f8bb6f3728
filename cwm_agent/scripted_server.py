"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for tests and demos.

Each POST to ``/v1/chat/completions`` or ``/v1/completions`` consumes the next
scripted entry; ``GET /v1/models`` lists the model. Entries:

- a plain str: the assistant's content (or the completion text).
- ``{"content": str}``; optional ``"reasoning"`` (sent as ``reasoning_content``),
  ``"tool_calls": [{"name": ..., "arguments": {...} or str, "id"?: ...}]``,
  ``"finish_reason"``, ``"usage": {...}`` (replaces the computed usage; None omits it),
  ``"choices": [...]`` (replaces the computed choices, e.g. ``[]``).
- ``{"text": str}``: the completion for ``/v1/completions``.
- ``"logprobs": [{token: logprob, ...}, ...]``: one mapping per generated token, its first
  key the token generated there, the rest the alternatives; sent only when the request
  asks (chat ``logprobs``/``top_logprobs``, completions ``logprobs``), in the
  OpenAI/vLLM shapes (``scripted_replies.py``). Without ``content``/``text`` the reply
  is the generated tokens joined.
- ``{"status": 429, "body": {...}, "headers": {"Retry-After": "0.01"}}``: an error reply.
  (The openai SDK honours only a Retry-After > 0; "0" falls back to its 0.5 s+ backoff.)
- ``{"delay": seconds, ...}``: sleep first, then answer with the rest of the entry.
- ``{"close": True}``: drop the connection without answering.
- ``{"raw": "not json"}``: a 200 whose body is that text (``"content_type"`` optional).

``replies`` may also be a callable ``(request_body) -> entry``; returning None
ends the script. When the script is exhausted (or an entry is malformed) the
server answers 500 with a message saying so and ``x-should-retry: false``, so a
test fails loudly instead of hanging in retries.

Run standalone: ``python -m cwm_agent.scripted_server SCRIPT.json --port 8000``
(SCRIPT.json: a list of entries or ``{"model": ..., "replies": [...]}``); the base
URL goes to stderr, nothing to stdout.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cwm_agent.scripted_replies import chat_reply, text_reply

Entry = Any  # str | dict | None
Script = list[Entry] | Callable[[dict[str, Any]], Entry]

ENTRY_KEYS = {
    "content", "reasoning", "tool_calls", "text", "status", "body", "headers", "delay",
    "close", "raw", "content_type", "choices", "finish_reason", "usage", "logprobs",
}  # fmt: skip


@dataclass
class RecordedRequest:
    """One request the server received; ``headers`` keys are lower-case, ``body`` parsed JSON."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    raw: bytes = b""
    peer: tuple[str, int] | None = None  # client address: same peer = same kept-alive connection
    entry: Entry = field(default=None, repr=False)

    def __getitem__(self, key: str) -> Any:
        """Dict-style access too: ``req["body"]`` is ``req.body``."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)


class ScriptedServer:
    def __init__(self, replies: Script, *, model: str = "scripted", port: int = 0) -> None:
        self.model = model
        self.requests: list[RecordedRequest] = []
        self._script = replies if callable(replies) else list(replies)
        self._next = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.scripted = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def remaining(self) -> int | None:
        """Entries not yet consumed (None for a callable script)."""
        return None if callable(self._script) else len(self._script) - self._next

    def start(self) -> ScriptedServer:
        # A short poll interval: stop() waits up to one interval (the default is 0.5 s).
        serve = lambda: self._httpd.serve_forever(poll_interval=0.02)  # noqa: E731
        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record_and_take(self, request: RecordedRequest) -> Entry:
        """Record a POST and return its scripted entry (None once exhausted)."""
        with self._lock:
            self.requests.append(request)
            if callable(self._script):
                entry = self._script(request.body if isinstance(request.body, dict) else {})
            elif self._next < len(self._script):
                entry = self._script[self._next]
                self._next += 1
            else:
                entry = None
            request.entry = entry
            return entry

    def sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)  # stop() cuts delays short


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler sleeping in a delay must not hold up stop()
    scripted: ScriptedServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real inference server
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # tests and demos keep stderr clean

    def do_GET(self) -> None:
        scripted = self.server.scripted
        scripted.requests.append(
            RecordedRequest("GET", self.path, self._headers(), peer=self.client_address)
        )
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = {"id": scripted.model, "object": "model", "created": 0, "owned_by": "scripted"}
            self._send(200, {"object": "list", "data": [model]})
        else:
            self._send(404, _error(f"no route GET {self.path}", "not_found", 404))

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = RecordedRequest(
            "POST", self.path, self._headers(), body, raw, self.client_address
        )
        path = self.path.rstrip("/")
        if path not in ("/v1/chat/completions", "/v1/completions"):
            self._send(404, _error(f"no route POST {self.path}", "not_found", 404))
            return
        scripted = self.server.scripted
        try:
            entry = scripted.record_and_take(request)
            self._answer(entry, path.endswith("/chat/completions"), body or {})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout); nothing to tell
        except Exception as exc:  # a bug in the script must reach the test, not vanish
            msg = f"ScriptedServer: bad script entry: {type(exc).__name__}: {exc}"
            self._send(500, _error(msg, "script_error", 500), {"x-should-retry": "false"})

    def _answer(self, entry: Entry, chat: bool, body: dict[str, Any]) -> None:
        scripted = self.server.scripted
        if entry is None:
            posts = sum(r.method == "POST" for r in scripted.requests)
            msg = f"ScriptedServer: script exhausted: request #{posts} has no scripted reply"
            self._send(500, _error(msg, "script_exhausted", 500), {"x-should-retry": "false"})
            return
        if isinstance(entry, str):
            entry = {"content": entry}
        if not isinstance(entry, dict) or not set(entry) <= ENTRY_KEYS:
            raise ValueError(f"unknown entry {entry!r}; keys must be among {sorted(ENTRY_KEYS)}")
        if entry.get("delay"):
            scripted.sleep(float(entry["delay"]))
        headers = dict(entry.get("headers") or {})
        if entry.get("close"):
            self.close_connection = True  # handler returns without a byte: connection dropped
            return
        if "status" in entry and entry["status"] != 200:
            status = int(entry["status"])
            err = entry.get("body") or _error(f"scripted error {status}", "scripted", status)
            self._send(status, err, headers)
        elif "raw" in entry:
            headers.setdefault("Content-Type", entry.get("content_type", "application/json"))
            self._send(200, str(entry["raw"]).encode(), headers)
        else:
            make = chat_reply if chat else text_reply
            self._send(200, make(entry, body, scripted.model), headers)

    def _headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        head = {"Content-Type": "application/json", **(headers or {})}
        head["Content-Length"] = str(len(data))
        if self.close_connection:
            head["Connection"] = "close"
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        lines += [f"{k}: {v}" for k, v in head.items()]
        # Headers and body in ONE write: split writes meet Nagle + delayed ACK (~40 ms).
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def _error(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible server.")
    parser.add_argument("script", help="JSON list of entries, or {model, replies}")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    with open(args.script, encoding="utf-8") as fh:
        script = json.load(fh)
    model = args.model or (script.get("model") if isinstance(script, dict) else None)
    replies = script["replies"] if isinstance(script, dict) else script
    server = ScriptedServer(replies, model=model or "scripted", port=args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.start()
    print(server.base_url, file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
