"""The Workspace the execution stage gets: fresh runtimes at an instance's base, from the
record's image (Docker) or a checkout of its clone; grading fields never in it."""

from __future__ import annotations

from batch_support import SWEBENCH_IMAGE, make_repo, needs, swebench_records

from cwm_agent.settings import RuntimeSettings
from cwm_agent.verification.workspace import CodeSource, image_runtime, workspace


def test_a_local_workspace_opens_fresh_copies_of_the_base(tmp_path):
    base = make_repo(tmp_path / "clone")  # HEAD is a later commit: the base must be used
    record = {"instance_id": "c-1", "repo": "a/b", "base_commit": base, "FAIL_TO_PASS": ["t"]}
    source = CodeSource(tmp_path / "clone", base, RuntimeSettings())
    with workspace("c-1", record, source) as ws:
        assert ws.record == {"instance_id": "c-1", "repo": "a/b", "base_commit": base}
        first, second = ws.open("one"), ws.open("two")
        try:
            first.write_file("calc.py", b"changed\n")
            assert second.read_file("calc.py") == b"def add(a, b):\n    return a - b\n"
        finally:
            first.close()
            second.close()


def test_an_image_workspace_opens_containers_at_the_records_base():
    from cwm_agent.errors import RuntimeFailure
    from cwm_agent.runtimes.docker_engine import connect

    try:
        client = connect()
        client.images.get(SWEBENCH_IMAGE)
    except RuntimeFailure as exc:
        needs(f"a Docker engine ({exc.message})")
    except Exception:  # noqa: BLE001 - ImageNotFound or anything else: not usable
        needs(f"the image {SWEBENCH_IMAGE}")
    record = swebench_records.record(1)
    settings = image_runtime(SWEBENCH_IMAGE, record["base_commit"], RuntimeSettings())
    with workspace(record["instance_id"], record, CodeSource(runtime=settings)) as ws:
        assert "FAIL_TO_PASS" not in ws.record and "test_patch" not in ws.record
        runtime = ws.open("probe")
        try:
            head = runtime.run("git rev-parse HEAD", 60)
            assert runtime.root == "/testbed"
            assert head.output.strip() == swebench_records.BASE_COMMIT
        finally:
            runtime.close()


def test_an_image_workspace_keeps_the_records_test_command_but_not_its_eval_script():
    # The cascade hands the execution stage this Workspace: without the record's own test
    # command it fell back to `python3 -m pytest`, which SWE-bench images' base env lacks.
    from cwm_agent.verification.testcmd import for_record, parse_swebench_log

    record = swebench_records.record(1)
    settings = image_runtime(SWEBENCH_IMAGE, record["base_commit"], RuntimeSettings())
    with workspace(record["instance_id"], record, CodeSource(runtime=settings)) as ws:
        kept = ws.record
    assert "eval_script" not in kept and "test_patch" not in kept
    assert "FAIL_TO_PASS" not in kept and "PASS_TO_PASS" not in kept
    assert swebench_records.BUGS["newest"].split("::")[1] not in str(kept)  # the hidden test
    command = for_record(kept, None)
    assert command is not None and command == for_record(record, None)
    assert command.kind == "swebench" and command.parser == record["log_parser"]
    log = f"PASSED {swebench_records.EXISTING_TESTS[0]}\nFAILED {swebench_records.TEST_FILE}::x\n"
    assert parse_swebench_log(command.parser, log, kept) == {
        swebench_records.EXISTING_TESTS[0]: "passed",
        f"{swebench_records.TEST_FILE}::x": "failed",
    }
