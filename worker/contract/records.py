"""The key of a job's record in the idempotency table, shared by the worker and the lookup.

The worker writes one item per (app client, job id) under this key; the producer library reads
it back (:mod:`worker.producer.lookup`) without loading the pipeline.
"""

from __future__ import annotations


def job_key(client_id: str, job_id: str) -> str:
    """The store key of a job: ``<client id>#<job id>``."""
    return f"{client_id}#{job_id}"
