"""How one instance becomes a `RunSettings`: its repository (or image) and the shared settings.

- folder of issue files: every instance runs against ``--repo`` (a private copy each, as in
  `run`);
- JSONL with the local runtime (or docker with a plain ``--image``): the record's ``repo``
  is found in ``--repos-dir`` and checked out at ``base_commit`` in a temporary clone;
- JSONL with an image per instance (``--image-template`` or the record's ``image``): the
  repository is already in the image, at ``--workdir`` (default ``/testbed``).

Which image, in which order, and the runtime settings for it: ``verification/images.py``
(the one precedence batch, select and evaluate share).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from cwm_agent.batch.instances import Instance
from cwm_agent.errors import UsageError
from cwm_agent.factory import require_work_tree
from cwm_agent.settings import RunSettings, RuntimeSettings
from cwm_agent.trajectory import new_run_id
from cwm_agent.verification.checkout import checkout_at, find_clone
from cwm_agent.verification.images import Images, runtime_for


@dataclass(frozen=True)
class BatchConfig:
    """The settings every instance shares (``base``) and how each gets its repository.

    ``base.runtime.image`` is the image for every instance when it was typed as a flag
    (``image_from_flag``: it wins over records' images); an image from env or a config file
    is used only for records without one.
    """

    base: RunSettings
    repo: Path | None = None  # folder input: the repository every issue is solved against
    repos_dir: Path | None = None  # JSONL input: where the records' clones are
    image_from_flag: bool = False
    image_template: str | None = None
    workdir_given: bool = False  # --workdir set anywhere: no /testbed default

    @property
    def runtime(self) -> str:
        return self.base.runtime.runtime

    def image_for(self, instance: Instance) -> tuple[str | None, bool]:
        """(image, repository already inside it), in ``images.py``'s order; no SWE-bench
        naming at the end (a docker batch without an image is refused in ``check``)."""
        runtime = self.base.runtime
        if runtime.runtime != "docker":
            return None, False
        images = Images(self.image_template, runtime.image, self.image_from_flag,
                        runtime.repo_in_image, naming=None)  # fmt: skip
        return images.pick(instance.instance_id, instance.image)

    def check(self, instances: list[Instance], from_folder: bool) -> None:
        """Refuse, before anything runs, a batch whose instances cannot all be set up."""
        if from_folder:
            if self.repo is None:
                raise UsageError(
                    "a folder of issue files needs --repo PATH", hint="the repository to fix"
                )
            if self.runtime == "local" or not self.base.runtime.repo_in_image:
                require_work_tree(self.repo)  # once, not one failure per instance
            return
        for instance in instances:
            image, in_image = self.image_for(instance)
            if self.runtime == "docker" and image is None:
                raise UsageError(
                    f"{instance.instance_id}: no image for the docker runtime",
                    hint="pass --image-template (e.g. 'swebench/sweb.eval.x86_64."
                    "{instance_id_1776}') or --image, or give records an image field",
                )
            if in_image:
                continue
            if not (instance.repo and instance.base_commit):
                raise UsageError(
                    f"{instance.instance_id}: the record needs repo and base_commit",
                    hint="or use --runtime docker with an image that holds the repository",
                )
            if self.repos_dir is None:
                raise UsageError(
                    "records are solved against clones: pass --repos-dir DIR",
                    hint="DIR/<owner>__<name>, DIR/<owner>/<name> or DIR/<name>",
                )

    @contextmanager
    def repository(self, instance: Instance) -> Iterator[Path]:
        """The directory `execute` gets for this instance (a temporary checkout if needed)."""
        image, in_image = self.image_for(instance)
        if self.repo is not None:
            yield self.repo
        elif in_image:
            yield Path(self.runtime_of(instance).workdir)  # recorded only; the image has it
        else:
            assert self.repos_dir and instance.repo and instance.base_commit  # see check()
            clone = find_clone(self.repos_dir, instance.repo)
            with checkout_at(clone, instance.base_commit) as work:
                yield work

    def runtime_of(self, instance: Instance) -> RuntimeSettings:
        """The instance's runtime: its image, where its repository is, its commit."""
        image, in_image = self.image_for(instance)
        workdir = self.base.runtime.workdir if self.workdir_given else None
        return runtime_for(self.base.runtime, image, in_image, instance.base_commit, workdir)

    def settings(self, instance: Instance, repo: Path, traj_path: Path) -> RunSettings:
        runtime = self.runtime_of(instance)
        return replace(
            self.base, repo=repo, runtime=runtime, traj_path=traj_path, run_id=new_run_id()
        )
