"""The Workspace the execution stage gets: fresh runtimes at an instance's base, from the
record's image (Docker) or a checkout of its clone; grading fields never in it."""

from __future__ import annotations

from batch_support import SWEBENCH_IMAGE, make_repo, needs, swebench_records

from cwm_agent.settings import RuntimeSettings
from cwm_agent.verification.images import Images, record_image, runtime_for
from cwm_agent.verification.workspace import CodeSource, workspace


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
    docker = RuntimeSettings(runtime="docker")
    settings = runtime_for(docker, SWEBENCH_IMAGE, True, record["base_commit"])
    with workspace(record["instance_id"], record, CodeSource(runtime=settings)) as ws:
        assert "FAIL_TO_PASS" not in ws.record and "test_patch" not in ws.record
        runtime = ws.open("probe")
        try:
            head = runtime.run("git rev-parse HEAD", 60)
            assert runtime.root == "/testbed"
            assert head.output.strip() == swebench_records.BASE_COMMIT
        finally:
            runtime.close()


def test_one_order_of_images_for_every_command():
    """Template, an --image flag, the record's image, a configured image, SWE-bench's
    naming: batch, select and evaluate all pick through ``images.Images``."""
    record = {"instance_id": "astropy__astropy-12907", "image": "rec:img"}
    iid = record["instance_id"]
    assert Images("t/{instance_id_1776}", "flag:img", True).pick(iid, "rec:img") == (
        "t/astropy_1776_astropy-12907", True
    )  # fmt: skip
    assert Images(None, "flag:img", True, False).pick(iid, "rec:img") == ("flag:img", False)
    assert Images(None, "cfg:img", False, False).pick(iid, "rec:img") == ("rec:img", True)
    assert Images(None, "cfg:img", False, False).pick(iid, None) == ("cfg:img", False)
    assert Images().pick(iid) == ("swebench/sweb.eval.x86_64.astropy_1776_astropy-12907:latest",
                                  True)  # fmt: skip
    assert Images(naming=None).pick(iid) == (None, False)
    assert record_image(record) == "rec:img"
    inside = runtime_for(RuntimeSettings(runtime="docker"), "rec:img", True, "abc")
    assert (inside.workdir, inside.base_commit, inside.repo_in_image) == ("/testbed", "abc", True)
    copied = runtime_for(RuntimeSettings(runtime="docker"), "py:3", False, "abc")
    assert (copied.workdir, copied.base_commit) == ("/repo", None)
