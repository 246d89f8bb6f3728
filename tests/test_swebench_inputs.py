"""The official inputs as they come: parquet files and dataset names (through `datasets`, from
its local cache when the hub cannot be reached), with an error that says what to do when
neither works. This machine cannot reach the Hugging Face hub: the cache is seeded here by
`datasets`' own builder, and the hub is "unreachable" at a closed local port.
"""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from batch_support import seed_hf_cache, write_jsonl
from batch_support import swebench_records as sr
from conftest import run_cli

pytest.importorskip("datasets") if os.environ.get("CWM_REQUIRE_DOCKER") != "1" else None

HIDE_DATASETS = """import sys


class Hide:  # as if the datasets extra were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("datasets", "pyarrow"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, Hide())
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once closed


@pytest.fixture
def hub_env(cli_env, tmp_path):
    """No hub (a closed port on this machine), an empty datasets cache of this test's own."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    env = {**cli_env, "HF_DATASETS_CACHE": str(cache), "HF_HOME": str(tmp_path / "hf-home")}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{closed_port()}"
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.pop(var, None)
    return env, cache


def selected_count(result) -> str:
    """The batch refusal that proves INPUT was read: how many instances it holds."""
    assert result.returncode == 2, result.stderr
    return result.stderr


def no_match(input_spec: str, tmp_path, env, *extra: str):
    args = ["batch", input_spec, "-o", str(tmp_path / "out"), "--model", "m", *extra]
    return run_cli([*args, "--filter", "^nothing$"], env)


def test_a_parquet_file_is_read_as_records(tmp_path, cli_env):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "lite.parquet"
    pq.write_table(pa.Table.from_pylist(sr.records(3)), path)
    result = no_match(str(path), tmp_path, cli_env)  # before: "not UTF-8" / decode error
    assert "none of the 3 instance(s) of INPUT matches the selection" in selected_count(result)
    preds = write_jsonl(tmp_path / "preds.jsonl", [sr.prediction(9, "gold")])
    evaluated = run_cli(["evaluate", str(preds), "--dataset", str(path)], cli_env)
    assert evaluated.returncode == 2 and "cwm-agent__vercmp-9" in evaluated.stderr


def test_a_dataset_name_loads_from_the_cache_when_the_hub_is_unreachable(tmp_path, hub_env):
    env, cache = hub_env
    seed_hf_cache(cache, "SWE-bench/SWE-bench_Lite", "dev", sr.records(2))
    started = time.monotonic()
    result = no_match("lite", tmp_path, env, "--split", "dev")
    assert "none of the 2 instance(s) of INPUT" in selected_count(result)
    assert "cannot be reached" in result.stderr and "using the local cache" in result.stderr
    assert time.monotonic() - started < 20  # not datasets' ~25 s of retries first
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    by_id = no_match("SWE-bench/SWE-bench_Lite", tmp_path, offline, "--split", "dev")
    assert "none of the 2 instance(s)" in selected_count(by_id)
    assert "cannot be reached" not in by_id.stderr  # offline as asked: no probe
    wrong_split = no_match("lite", tmp_path, offline)  # test: not in the cache
    assert "cannot load" in selected_count(wrong_split)


def test_a_dataset_in_neither_place_says_what_to_do(tmp_path, hub_env):
    env, cache = hub_env
    for extra_env in ({}, {"HF_HUB_OFFLINE": "1"}):
        result = no_match("verified", tmp_path, {**env, **extra_env})
        assert result.returncode == 2, result.stderr
        assert "cannot load the dataset SWE-bench/SWE-bench_Verified (split test)" in (
            result.stderr
        )
        assert str(cache) in result.stderr and "HF_DATASETS_CACHE" in result.stderr
        assert "save it as a parquet or JSONL file" in result.stderr
    hidden = tmp_path / "hide"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text(HIDE_DATASETS)
    without = {**env, "PYTHONPATH": str(hidden)}
    result = no_match("verified", tmp_path, without)
    assert result.returncode == 2 and "pip install 'cwm-agent[datasets]'" in result.stderr
    parquet = tmp_path / "x.parquet"
    parquet.write_bytes(b"PAR1")
    result = no_match(str(parquet), tmp_path, without)
    assert result.returncode == 2 and "pip install 'cwm-agent[datasets]'" in result.stderr


def test_evaluate_takes_a_dataset_name_too(tmp_path, hub_env):
    env, cache = hub_env
    seed_hf_cache(cache, "SWE-bench/SWE-bench_Verified", "test", sr.records(2))
    preds = write_jsonl(tmp_path / "preds.jsonl", [sr.prediction(1, "empty")])
    result = run_cli(["evaluate", str(preds), "-d", "verified", "--json"], env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # an empty patch is graded without a container
    assert report["empty_patch_ids"] == [sr.instance_id(1)]
    assert report["total_instances"] == 2 and report["incomplete_ids"] == [sr.instance_id(2)]
