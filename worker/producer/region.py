"""Which region the producer's own SDK clients use when the caller names none."""

from __future__ import annotations

import os


def sdk_region(region_name: str | None) -> str | None:
    """``region_name``, else ``AWS_REGION``, else None (the SDK's own chain).

    The worker, ECS and ``cognito-worker local`` name the region in ``AWS_REGION``; boto3 and
    aioboto3 read only ``AWS_DEFAULT_REGION`` and the config file, so a producer made in that
    environment would otherwise have none. The importer reads the two variables the same way.
    """
    return region_name or os.environ.get("AWS_REGION") or None
