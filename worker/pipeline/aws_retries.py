"""Retries of SQS, SNS and DynamoDB calls through brief outages: one list of errors, one policy.

Cognito calls are not retried here: their errors are classified one by one (see
:mod:`worker.pipeline.decisions`). The calls retried here are the worker's own bookkeeping (receive,
delete, publish, claim), where any transport or service error is worth another try within a
deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

from worker.pipeline.batching import BatchEntryError

T = TypeVar("T")

#: What an AWS SDK call can raise when the service or the network lets it down.
AWS_ERRORS: tuple[type[BaseException], ...] = (
    BotoCoreError,
    ClientError,
    aiohttp.ClientError,
    OSError,
)


def is_retryable(error: BaseException) -> bool:
    """Whether another try may succeed: not when a batch entry was refused for what it holds."""
    if isinstance(error, BatchEntryError):
        return not error.sender_fault
    return isinstance(error, AWS_ERRORS)


async def with_aws_retries(call: Callable[[], Awaitable[T]], *, within_s: float) -> T:
    """Await ``call()``, trying again with jittered backoff until it passes or ``within_s`` ends."""
    retrying = AsyncRetrying(
        stop=stop_after_delay(within_s),
        wait=wait_random_exponential(multiplier=0.2, max=5),
        retry=retry_if_exception(is_retryable),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable")  # pragma: no cover - reraise=True
