"""Ray for the commands that fan out over a cluster (batch, select, evaluate): the
connection, shared; each command's own tasks live with it.

Ray is imported only inside ``session``, only when ``--executor ray`` is asked for.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from cwm_agent.errors import RuntimeFailure, UsageError

INSTALL_HINT = "pip install 'cwm-agent[ray]'"
FORWARDED_ENV = ("OPENAI_API_KEY",)  # the model key, for nodes that do not have it
CONNECT_TIMEOUT = 10.0  # seconds to reach --ray-address before giving up
TASK_RETRIES = 1  # a worker or node lost mid-task: run it once more elsewhere


def require_ray() -> None:
    """A usage error (exit 2), before anything runs, when Ray is not installed."""
    try:
        installed = importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        raise UsageError("--executor ray needs Ray, which is not installed", hint=INSTALL_HINT)


@contextmanager
def session(address: str | None, workers: int, say: Callable[[str], None]) -> Iterator[Any]:
    """Ray, connected: to the cluster at ``address``, or to a new local instance (with
    ``workers`` CPUs); ``say`` tells which. Shared with `evaluate --executor ray`."""
    import ray

    common: dict[str, Any] = {
        "logging_level": logging.ERROR,  # Ray's start-up chatter would cut into the display
        "log_to_driver": False,  # workers' own output: the instance logs have what matters
        "runtime_env": {"env_vars": {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}},
    }
    if address:
        _check_reachable(address)
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        if address:
            say(f"ray: joining the cluster at {address}")
            ray.init(address=address, **common)
        else:
            say(f"ray: starting a local instance with {workers} CPU(s)")
            # "local": a new instance even when RAY_ADDRESS names a cluster.
            ray.init(address="local", num_cpus=workers, include_dashboard=False, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        ray.shutdown()
        raise RuntimeFailure(
            f"cannot {'join the Ray cluster at ' + address if address else 'start Ray'}: {exc}",
            hint="check the address (ray status --address ADDR) or leave --ray-address out",
        ) from exc
    except BaseException:
        ray.shutdown()
        raise
    finally:
        signal.signal(signal.SIGTERM, sigterm)  # ray.init replaces it with sys.exit
    try:
        yield ray
    finally:
        ray.shutdown()  # only disconnects from a cluster; stops a local instance


def _check_reachable(address: str) -> None:
    """Fail fast: ray.init waits for an unreachable cluster without end, retrying."""
    if address in ("auto", "local"):
        return  # resolved by Ray from this machine's running instance
    scheme, _, hostport = address.rpartition("://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():  # no port: Ray's defaults
        host, port = hostport, "10001" if scheme == "ray" else "6379"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise RuntimeFailure(
            f"cannot reach the Ray cluster at {address}: {exc}",
            hint="is its head node up? (ray status --address ADDR), or leave --ray-address out",
        ) from None
