"""The idempotency stores' contract, run against memory and against moto's DynamoDB over HTTP."""

import asyncio
from collections.abc import AsyncIterator

import aioboto3
import pytest

from worker.local.aws import REGION, Endpoints, aws_client, create_idempotency_table
from worker.pipeline.idempotency import (
    ClaimLost,
    ClaimState,
    DynamoDbStore,
    IdempotencyStore,
    JobHistory,
    MemoryStore,
)

FP = "fingerprint-of-the-payload"


@pytest.fixture(params=["memory", "dynamodb"])
async def store(
    request: pytest.FixtureRequest, endpoints: Endpoints
) -> AsyncIterator[IdempotencyStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    table = create_idempotency_table(endpoints)
    session = aioboto3.Session(
        region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
    )
    async with session.client("dynamodb", endpoint_url=endpoints.moto) as client:
        yield DynamoDbStore(client, table)


async def test_first_claim_owns_and_a_second_finds_it_busy(store: IdempotencyStore) -> None:
    first = await store.claim("c#1", lease_s=30, fingerprint=FP)
    assert first.state is ClaimState.OWNED
    assert not first.interrupted
    second = await store.claim("c#1", lease_s=30, fingerprint=FP)
    assert second.state is ClaimState.BUSY
    assert 25 < second.lease_left_s <= 30


async def test_a_completed_job_answers_with_its_result(store: IdempotencyStore) -> None:
    claim = await store.claim("c#2", lease_s=30, fingerprint=FP)
    await store.complete("c#2", claim.token, '{"status": "succeeded"}', ttl_s=3600)
    again = await store.claim("c#2", lease_s=30, fingerprint=FP)
    assert again.state is ClaimState.COMPLETED
    assert again.result == '{"status": "succeeded"}'


async def test_a_released_job_can_be_claimed_and_says_whether_cognito_may_have_acted(
    store: IdempotencyStore,
) -> None:
    claim = await store.claim("c#3", lease_s=30, fingerprint=FP)
    await store.release("c#3", claim.token, JobHistory(may_have_acted=False))
    clean = await store.claim("c#3", lease_s=30, fingerprint=FP)
    assert clean.state is ClaimState.OWNED
    assert not clean.interrupted
    await store.release("c#3", clean.token, JobHistory(may_have_acted=True))
    after_ambiguous = await store.claim("c#3", lease_s=30, fingerprint=FP)
    assert after_ambiguous.state is ClaimState.OWNED
    assert after_ambiguous.interrupted


async def test_an_expired_record_is_a_fresh_key(
    store: IdempotencyStore, endpoints: Endpoints
) -> None:
    """After IDEMPOTENCY_TTL_S a job id is new again, on both stores alike. DynamoDB deletes an
    expired item when it gets to it (up to days later), so the item is still there when the
    claim comes: the store must read ``expires_at`` itself."""
    done = await store.claim("c#x", lease_s=30, fingerprint=FP)
    await store.complete("c#x", done.token, '{"status": "succeeded"}', ttl_s=1)
    await store.claim("c#y", lease_s=30, fingerprint=FP)  # left in progress: its own TTL
    await asyncio.sleep(2.1)
    if isinstance(store, DynamoDbStore):
        dynamodb = aws_client("dynamodb", endpoints.moto)
        item = dynamodb.get_item(TableName=store._table, Key={"pk": {"S": "c#x"}})["Item"]
        assert item["state"]["S"] == "completed"  # expired, not yet deleted
    fresh = await store.claim("c#x", lease_s=30, fingerprint="another-payload")
    assert fresh.state is ClaimState.OWNED
    assert fresh.result is None
    assert not fresh.interrupted
    assert fresh.fingerprint == "another-payload"  # no JobIdReused for a new job
    # The fresh record is a record like any other: a second claim finds it busy.
    assert (await store.claim("c#x", lease_s=30, fingerprint=FP)).state is ClaimState.BUSY


async def test_an_owner_whose_lease_lapsed_cannot_overwrite_the_new_owners_result(
    store: IdempotencyStore,
) -> None:
    first = await store.claim("c#z", lease_s=2.0, fingerprint=FP)
    await asyncio.sleep(2.1)
    second = await store.claim("c#z", lease_s=30, fingerprint=FP)
    assert second.state is ClaimState.OWNED
    await store.complete("c#z", second.token, '{"status": "failed"}', ttl_s=3600)
    with pytest.raises(ClaimLost):
        await store.complete("c#z", first.token, '{"status": "succeeded"}', ttl_s=3600)
    answer = await store.claim("c#z", lease_s=30, fingerprint=FP)
    assert answer.state is ClaimState.COMPLETED
    assert answer.result == '{"status": "failed"}'


async def test_a_crashed_owners_lease_lapses_in_seconds(store: IdempotencyStore) -> None:
    # The owner dies without releasing. (A lease of 2 s: a busy moto can take more than a few
    # tenths of a second between two claims, and a shorter lease would lapse in between.)
    await store.claim("c#4", lease_s=2.0, fingerprint=FP)
    assert (await store.claim("c#4", lease_s=30, fingerprint=FP)).state is ClaimState.BUSY
    await asyncio.sleep(2.1)
    taken_over = await store.claim("c#4", lease_s=30, fingerprint=FP)
    assert taken_over.state is ClaimState.OWNED
    assert taken_over.interrupted  # it may have called Cognito before it died


async def test_only_the_owner_extends_the_lease(store: IdempotencyStore) -> None:
    claim = await store.claim("c#5", lease_s=0.3, fingerprint=FP)
    await store.extend("c#5", "someone-else", lease_s=30)
    await asyncio.sleep(0.4)
    stolen = await store.claim("c#5", lease_s=0.3, fingerprint=FP)
    assert stolen.state is ClaimState.OWNED
    await store.extend("c#5", stolen.token, lease_s=30)
    await asyncio.sleep(0.4)
    assert (await store.claim("c#5", lease_s=30, fingerprint=FP)).state is ClaimState.BUSY
    # The first owner's late release changes nothing: it no longer owns the job.
    await store.release("c#5", claim.token, JobHistory(may_have_acted=False))
    assert (await store.claim("c#5", lease_s=30, fingerprint=FP)).state is ClaimState.BUSY


async def test_a_jobs_history_survives_its_deliveries_and_ends_with_it(
    store: IdempotencyStore,
) -> None:
    claim = await store.claim("c#6", lease_s=30, fingerprint=FP)
    assert claim.history == JobHistory()
    history = JobHistory(may_have_acted=True, failures=2, deferrals=1, done=("AdminCreateUser",))
    await store.release("c#6", claim.token, history)
    again = await store.claim("c#6", lease_s=30, fingerprint=FP)
    assert again.history == history
    # A crash before the next release leaves what the last release said, and "may have acted".
    await asyncio.sleep(0)
    await store.complete("c#6", again.token, '{"status": "succeeded"}', ttl_s=3600)
    done = await store.claim("c#6", lease_s=30, fingerprint=FP)
    assert done.state is ClaimState.COMPLETED


async def test_the_first_payload_fingerprint_is_kept_with_the_job_id(
    store: IdempotencyStore,
) -> None:
    first = await store.claim("c#7", lease_s=30, fingerprint="first")
    assert first.fingerprint == "first"
    busy = await store.claim("c#7", lease_s=30, fingerprint="second")
    assert busy.state is ClaimState.BUSY
    assert busy.fingerprint == "first"
    await store.release("c#7", first.token, JobHistory())
    reclaimed = await store.claim("c#7", lease_s=30, fingerprint="second")
    assert reclaimed.state is ClaimState.OWNED
    assert reclaimed.fingerprint == "first"
    await store.complete("c#7", reclaimed.token, "{}", ttl_s=3600)
    completed = await store.claim("c#7", lease_s=30, fingerprint="third")
    assert completed.state is ClaimState.COMPLETED
    assert completed.fingerprint == "first"
