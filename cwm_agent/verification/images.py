"""Which image an instance runs in, and the runtime settings that open it: one precedence
for `batch`, `select` and `evaluate`.

The image, the first of:

1. ``--image-template`` (placeholders ``{instance_id}``, ``{instance_id_1776}``): the
   repository is inside it;
2. an ``--image`` typed on the command line (batch): every instance in that one image, the
   checkout copied in (unless ``--repo-in-image``);
3. the record's own ``image`` (the official datasets name one per instance): inside;
4. an image set by env or a config file, as 2, for records without one of their own;
5. SWE-bench's naming, ``swebench/sweb.eval.x86_64.{instance_id_1776}:latest`` (select
   and evaluate; batch asks for an image instead: its folder inputs have no record).

A repository inside an image is at ``/testbed`` (SWE-bench's) unless ``--workdir`` says
otherwise; one copied in goes to ``/repo``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from cwm_agent.settings import RuntimeSettings
from cwm_agent.verification.store import image_from_template

SWEBENCH_IMAGE = "swebench/sweb.eval.x86_64.{instance_id_1776}:latest"  # SWE-bench's naming
SWEBENCH_WORKDIR = "/testbed"
COPY_WORKDIR = "/repo"  # where a checkout copied into a container goes


@dataclass(frozen=True)
class Images:
    """Where images come from (see the module doc for the order)."""

    template: str | None = None  # --image-template
    image: str | None = None  # --image, or one from env / a config file
    image_from_flag: bool = False  # typed as a flag: it wins over the records' images
    repo_in_image: bool = False  # of ``image``: the repository is inside it
    naming: str | None = SWEBENCH_IMAGE  # the last resort; None: no image then

    def pick(self, instance_id: str, record_image: Any = None) -> tuple[str | None, bool]:
        """(the image, whether the repository is inside it); (None, False) for none."""
        if self.template:
            return image_from_template(self.template, instance_id), True
        if self.image and self.image_from_flag:
            return self.image, self.repo_in_image
        if isinstance(record_image, str) and record_image:
            return record_image, True
        if self.image:
            return self.image, self.repo_in_image
        if self.naming:
            return image_from_template(self.naming, instance_id), True
        return None, False


def record_image(record: Mapping[str, Any], template: str | None = None) -> str:
    """The image holding a SWE-bench record's repository (1, 3 and 5 of the order)."""
    image, _ = Images(template).pick(str(record["instance_id"]), record.get("image"))
    assert image is not None  # the naming always gives one
    return image


def runtime_for(
    base: RuntimeSettings,
    image: str | None,
    in_image: bool,
    commit: str | None = None,
    workdir: str | None = None,
) -> RuntimeSettings:
    """``base`` for one instance: its image, where the repository is, and the record's
    commit that an image's HEAD is checked against (a mismatch is reported)."""
    return replace(
        base,
        image=image,
        repo_in_image=in_image,
        workdir=workdir or (SWEBENCH_WORKDIR if in_image else COPY_WORKDIR),
        base_commit=commit if in_image else None,
    )
