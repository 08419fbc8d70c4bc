"""What a deletion policy's re-check gets, shared by the Airflow task group and the command lines.

A policy names a factory ``factory(ctx: RecheckContext) -> recheck | None``; the delete step calls the
recheck with each chunk's plan items right before deleting them. No Airflow here: the CLIs build the
same context as the delete task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the stubs are a dev dependency
    from types_boto3_s3 import S3Client

    from include.core.artifacts import ArtifactPath


@dataclass(frozen=True)
class RecheckContext:
    """What a policy's re-check factory gets: ``factory(ctx) -> recheck | None``."""

    client: S3Client
    bucket: str
    params: Mapping[str, Any]  # the run's resolved settings
    plan: Mapping[str, Any]  # plan.json: the summary plus the policy's extra fields
    run_dir: ArtifactPath


RecheckFactory = Callable[[RecheckContext], Any]
