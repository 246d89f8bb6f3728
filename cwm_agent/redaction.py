"""Secrets out of everything a run stores, shows or sends back to the model server.

The shell sessions start without them (``SECRET_NAME``), but a command can still find a
key (a file, another process): its value is replaced wherever it shows up in an
observation or a reply, before the trajectory, the progress lines or the next request
see it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

# Variables whose values are credentials: the API key first of all.
SECRET_NAME = re.compile(r"(?:^|_)(?:API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD)(?:_|$)", re.I)
MIN_LENGTH = 8  # "none", "demo" and other placeholders are not secrets
MARK = "[secret redacted]"


def secret_values(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values to hide: OPENAI_API_KEY's and every secret-named variable's, longest first."""
    env = os.environ if env is None else env
    found = {v for k, v in env.items() if (k == "OPENAI_API_KEY" or SECRET_NAME.search(k))}
    return tuple(sorted((v for v in found if len(v) >= MIN_LENGTH), key=len, reverse=True))


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MARK)
    return text
