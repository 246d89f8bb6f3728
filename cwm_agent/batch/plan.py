"""How one instance becomes a `RunSettings`: its repository (or image) and the shared settings.

- folder of issue files: every instance runs against ``--repo`` (a private copy each, as in
  `run`);
- JSONL with the local runtime (or docker with a plain ``--image``): the record's ``repo``
  is found in ``--repos-dir`` and checked out at ``base_commit`` in a temporary clone;
- JSONL with an image per instance (``--image-template`` or the record's ``image``): the
  repository is already in the image, at ``--workdir`` (default ``/testbed``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from cwm_agent.batch.instances import Instance
from cwm_agent.errors import UsageError
from cwm_agent.factory import require_work_tree
from cwm_agent.settings import RunSettings
from cwm_agent.trajectory import new_run_id
from cwm_agent.verification.checkout import checkout_at, find_clone
from cwm_agent.verification.store import image_from_template

SWEBENCH_WORKDIR = "/testbed"


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
        """(image, repository already inside it). Flags win over the record's own image."""
        runtime = self.base.runtime
        if runtime.runtime != "docker":
            return None, False
        if self.image_template:
            return image_from_template(self.image_template, instance.instance_id), True
        if self.image_from_flag:
            return runtime.image, runtime.repo_in_image
        if instance.image:
            return instance.image, True
        return runtime.image, runtime.repo_in_image

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
            yield Path(self._workdir(in_image))  # recorded only; the image has it
        else:
            assert self.repos_dir and instance.repo and instance.base_commit  # see check()
            clone = find_clone(self.repos_dir, instance.repo)
            with checkout_at(clone, instance.base_commit) as work:
                yield work

    def settings(self, instance: Instance, repo: Path, traj_path: Path) -> RunSettings:
        image, in_image = self.image_for(instance)
        runtime = replace(
            self.base.runtime,
            image=image,
            repo_in_image=in_image,
            workdir=self._workdir(in_image),
            # The image's HEAD is checked against the record's commit (a mismatch is reported).
            base_commit=instance.base_commit if in_image else None,
        )
        return replace(
            self.base, repo=repo, runtime=runtime, traj_path=traj_path, run_id=new_run_id()
        )

    def _workdir(self, in_image: bool) -> str:
        if self.workdir_given:
            return self.base.runtime.workdir
        return SWEBENCH_WORKDIR if in_image else "/repo"
