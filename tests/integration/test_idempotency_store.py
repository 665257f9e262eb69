"""The idempotency stores' contract, run against memory and against moto's DynamoDB over HTTP."""

import asyncio
from collections.abc import AsyncIterator

import aioboto3
import pytest

from worker.idempotency import ClaimState, DynamoDbStore, IdempotencyStore, MemoryStore
from worker.local_aws import REGION, Endpoints, create_idempotency_table


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
    first = await store.claim("c#1", lease_s=30)
    assert first.state is ClaimState.OWNED
    assert not first.interrupted
    second = await store.claim("c#1", lease_s=30)
    assert second.state is ClaimState.BUSY
    assert 25 < second.lease_left_s <= 30


async def test_a_completed_job_answers_with_its_result(store: IdempotencyStore) -> None:
    claim = await store.claim("c#2", lease_s=30)
    await store.complete("c#2", claim.token, '{"status": "succeeded"}', ttl_s=3600)
    again = await store.claim("c#2", lease_s=30)
    assert again.state is ClaimState.COMPLETED
    assert again.result == '{"status": "succeeded"}'


async def test_a_released_job_can_be_claimed_and_says_whether_cognito_may_have_acted(
    store: IdempotencyStore,
) -> None:
    claim = await store.claim("c#3", lease_s=30)
    await store.release("c#3", claim.token, ambiguous=False)
    clean = await store.claim("c#3", lease_s=30)
    assert clean.state is ClaimState.OWNED
    assert not clean.interrupted
    await store.release("c#3", clean.token, ambiguous=True)
    after_ambiguous = await store.claim("c#3", lease_s=30)
    assert after_ambiguous.state is ClaimState.OWNED
    assert after_ambiguous.interrupted


async def test_a_crashed_owners_lease_lapses_in_seconds(store: IdempotencyStore) -> None:
    await store.claim("c#4", lease_s=0.3)  # the owner dies without releasing
    assert (await store.claim("c#4", lease_s=30)).state is ClaimState.BUSY
    await asyncio.sleep(0.4)
    taken_over = await store.claim("c#4", lease_s=30)
    assert taken_over.state is ClaimState.OWNED
    assert taken_over.interrupted  # it may have called Cognito before it died


async def test_only_the_owner_extends_the_lease(store: IdempotencyStore) -> None:
    claim = await store.claim("c#5", lease_s=0.3)
    await store.extend("c#5", "someone-else", lease_s=30)
    await asyncio.sleep(0.4)
    stolen = await store.claim("c#5", lease_s=0.3)
    assert stolen.state is ClaimState.OWNED
    await store.extend("c#5", stolen.token, lease_s=30)
    await asyncio.sleep(0.4)
    assert (await store.claim("c#5", lease_s=30)).state is ClaimState.BUSY
    # The first owner's late release changes nothing: it no longer owns the job.
    await store.release("c#5", claim.token, ambiguous=False)
    assert (await store.claim("c#5", lease_s=30)).state is ClaimState.BUSY
