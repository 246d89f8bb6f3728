"""Secrets out of everything a run stores, shows or sends back to the model server.

The shell sessions start without them (``is_secret_name``), but a command can still find a
key (a file, another process): its value is replaced wherever it shows up in an
observation or a reply, before the trajectory, the progress lines or the next request
see it. What the model wrote is run as it wrote it: only the copies that are stored,
shown or sent on are redacted (``agent.py``).

Which values count as secrets (``worth_hiding``): a value shorter than 8 characters, or
one made of a single kind of character (only letters, or only digits) shorter than 20, is
a word, a placeholder or a number, not a key: ``DB_PASSWORD=password`` must not turn every
``password`` of the code into a mark. Keys (``sk-...``, tokens, generated passwords) mix
letters with digits or symbols, or are long.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

# One vocabulary of credential names, for variables (their values are hidden, and kept
# from the shell) and for settings' keys (refused in config files and JSON settings). A
# name is split into words first (``accessToken``, ``APIKey``, ``x-api-key``, ``AWS_SECRET``).
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_SECRET_WORDS = frozenset(
    {"secret", "password", "passwd", "token", "credential", "authorization", "bearer", "cookie"}
    | {"apikey", "privatekey"}  # also as two words: api_key, privateKey
)
# "key" names a credential only as the last word (api_key, privateKey, GPG_KEY), not in
# key_file or keys_to_drop; "token" not after these (max_tokens, bos_token, pad_token_id).
_NOT_BEFORE_TOKEN = frozenset(
    {"max", "min", "num", "new", "bos", "eos", "pad", "unk", "sep", "cls", "mask", "stop"}
    | {"special", "start", "end"}
)
MIN_LENGTH = 8  # "none", "demo" and other placeholders are not secrets
WORD_LENGTH = 20  # below this, letters alone (or digits alone) are a word or a number
MARK = "[secret redacted]"


def is_secret_name(name: str) -> bool:
    """A name that holds a credential: ``OPENAI_API_KEY``, ``accessToken``, ``clientSecret``,
    ``privateKey``, ``bearerToken``, ``Set-Cookie``; not ``max_tokens`` or ``bos_token``."""
    words = [_singular(w.lower()) for w in _WORD.findall(name)]
    if words and words[-1] == "key":
        return True
    for i, word in enumerate(words):
        pair = word + words[i + 1] if i + 1 < len(words) else ""
        if pair in _SECRET_WORDS:
            return True
        if word in _SECRET_WORDS and not (
            word == "token" and i and words[i - 1] in _NOT_BEFORE_TOKEN
        ):
            return True
    return False


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and word[:-1] in (_SECRET_WORDS | {"key"}) else word


def worth_hiding(value: str) -> bool:
    """Whether ``value`` looks like a key rather than a word, a placeholder or a number."""
    if len(value) < MIN_LENGTH:
        return False
    kinds = {"letter" if c.isalpha() else "digit" if c.isdigit() else "other" for c in value}
    return len(kinds) > 1 or len(value) >= WORD_LENGTH


def secret_values(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values to hide: OPENAI_API_KEY's and every secret-named variable's, longest first."""
    env = os.environ if env is None else env
    found = {v for k, v in env.items() if is_secret_name(k)}
    return tuple(sorted((v for v in found if worth_hiding(v)), key=len, reverse=True))


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MARK)
    return text


def redact_tree(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every string in it redacted, keys
    included: a record a hook made, or a whole trajectory step, holds text from anywhere."""
    if not secrets:
        return value
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {redact_tree(k, secrets): redact_tree(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(item, secrets) for item in value]
    return value


def url_without_credentials(url: str) -> str:
    """``url`` as it may be stored or shown: ``user:password@`` taken out and the value of
    every secret-named query parameter (``?api_key=...``) replaced by the mark (the client
    still uses them)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc and not parts.query:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host, query=_query_without_secrets(parts.query)))


def _query_without_secrets(query: str) -> str:
    """``query`` with secret-named parameters' values marked; every other byte as it was
    (re-encoding the rest would show a URL the user never wrote)."""
    fields = []
    for field in query.split("&"):
        name, equals, _ = field.partition("=")
        hidden = equals and is_secret_name(unquote_plus(name))
        fields.append(f"{name}={MARK}" if hidden else field)
    return "&".join(fields)
