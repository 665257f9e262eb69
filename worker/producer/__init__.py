"""The producer side of the contract: send jobs the worker will accept, and read their results.

    from worker.jobs import SignUpJob
    from worker.producer import JobProducer

    with JobProducer(queue_url) as producer:
        sent = producer.send(SignUpJob(version=1, type="sign_up", username="alice", password=pw))

Jobs are checked by the worker's own decoder before anything is sent, so a job the worker would
reject raises :class:`InvalidJob` with the reason the worker would publish.

This folder is a library users install with the worker: it imports the contract and nothing
else of the worker's, so a producer never loads the pipeline, the Cognito side or their settings.
"""

from worker.producer.aio import AsyncJobProducer, AsyncOnBatch
from worker.producer.batches import GroupId
from worker.producer.client import JobProducer, OnBatch
from worker.producer.jobs import (
    FailedJob,
    InvalidJob,
    JobInput,
    PreparedJob,
    SendReport,
    SentJob,
    new_job_id,
    prepare_job,
)
from worker.producer.lookup import (
    JobState,
    JobStatus,
    UnprocessedKeysError,
    async_look_up_job,
    look_up_job,
    look_up_jobs,
)
from worker.producer.results import (
    AsyncResultFollower,
    ResultFollower,
    WaitOutcome,
    async_temporary_results_queue,
    parse_result,
    temporary_results_queue,
)

__all__ = [
    "AsyncJobProducer",
    "AsyncOnBatch",
    "AsyncResultFollower",
    "FailedJob",
    "GroupId",
    "InvalidJob",
    "JobInput",
    "JobProducer",
    "JobState",
    "JobStatus",
    "OnBatch",
    "PreparedJob",
    "ResultFollower",
    "SendReport",
    "SentJob",
    "UnprocessedKeysError",
    "WaitOutcome",
    "async_look_up_job",
    "async_temporary_results_queue",
    "look_up_job",
    "look_up_jobs",
    "new_job_id",
    "parse_result",
    "prepare_job",
    "temporary_results_queue",
]
