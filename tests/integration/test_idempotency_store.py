"""The idempotency stores' contract, run against memory and against dynalite's DynamoDB over
HTTP; and the DynamoDB store's races, claims sent at the same moment from several clients.

The races rest on DynamoDB's conditional writes being atomic: the condition and the write are one
step, per item. dynalite makes them so (a lock per item); moto does not, and the race tests fail
there now and then (two claims of one key both own it).
"""

import asyncio
import random
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import aioboto3
import pytest
from aiobotocore.config import AioConfig

from worker.local.aws import (
    LOOPBACK,
    REGION,
    Endpoints,
    aws_client,
    create_idempotency_table,
    free_port,
)
from worker.pipeline.idempotency import (
    Claim,
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
    async with session.client("dynamodb", endpoint_url=endpoints.tables) as client:
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
        dynamodb = aws_client("dynamodb", endpoints.tables)
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


# --------------------------------------------------------------------------- races

#: Tasks racing for one table, each with its own session, client and connections.
RACERS = 4
RESULT = '{"status": "succeeded"}'


@pytest.fixture
def race_table(endpoints: Endpoints) -> str:
    return create_idempotency_table(endpoints)


@pytest.fixture
async def racers(endpoints: Endpoints, race_table: str) -> AsyncIterator[list[DynamoDbStore]]:
    """A store on the race's table per racing task."""
    async with AsyncExitStack() as clients:
        stores = []
        for _ in range(RACERS):
            session = aioboto3.Session(
                region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
            )
            client = await clients.enter_async_context(
                session.client(
                    "dynamodb",
                    endpoint_url=endpoints.tables,
                    config=AioConfig(max_pool_connections=64),
                )
            )
            stores.append(DynamoDbStore(client, race_table))
        yield stores


async def keys_owned_twice(stores: list[DynamoDbStore], keys: list[str]) -> list[str]:
    """Claim each key three times from every store at once, five keys at a time (twelve writes
    meet on each item); return the keys that did not end with exactly one owner."""
    wrong = []
    for start in range(0, len(keys), 5):
        rounds = keys[start : start + 5]
        answers = await asyncio.gather(
            *(
                asyncio.gather(
                    *(store.claim(key, lease_s=30, fingerprint=FP) for store in stores * 3)
                )
                for key in rounds
            )
        )
        for key, claims in zip(rounds, answers, strict=True):
            assert {claim.state for claim in claims} <= {ClaimState.OWNED, ClaimState.BUSY}
            if sum(claim.state is ClaimState.OWNED for claim in claims) != 1:
                wrong.append(key)
    return wrong


async def test_of_many_claims_of_one_key_sent_at_once_exactly_one_owns(
    racers: list[DynamoDbStore],
) -> None:
    assert await keys_owned_twice(racers, [f"race#{i}" for i in range(600)]) == []


@pytest.fixture
def moto_switching_often() -> Iterator[str]:
    """A moto server whose threads switch every 10 µs instead of every 5 ms: its UpdateItem
    reads the item, checks the condition and writes in three steps with no lock, and a short
    switch interval makes two requests meet between them often enough to count."""
    port = free_port()
    launcher = (
        "import sys; sys.setswitchinterval(1e-5); from moto.server import main; "
        f"main(['-H', '{LOOPBACK}', '-p', '{port}'])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto did not start"
                time.sleep(0.05)
        yield f"http://{LOOPBACK}:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_the_claim_race_catches_a_dynamodb_whose_conditional_writes_are_not_atomic(
    moto_switching_often: str,
) -> None:
    """The race above has teeth: on moto's DynamoDB it finds keys owned twice. (At moto's
    default switch interval too, only rarely: 1 key in 600.) This is why the tests' DynamoDB
    is dynalite."""
    table = create_idempotency_table(Endpoints(moto_switching_often, moto_switching_often))
    async with AsyncExitStack() as clients:
        stores = []
        for _ in range(RACERS):
            client = await clients.enter_async_context(
                aioboto3.Session(
                    region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local"
                ).client("dynamodb", endpoint_url=moto_switching_often)
            )
            stores.append(DynamoDbStore(client, table))
        doubled = await keys_owned_twice(stores, [f"moto#{i}" for i in range(100)])
    assert doubled, "moto's conditional writes held: the race test may have lost its teeth"


async def test_when_a_lease_lapses_one_claimer_or_the_late_owner_wins_never_two(
    racers: list[DynamoDbStore],
) -> None:
    """At the moment a lease lapses, its owner completes the job while the other tasks keep
    claiming it: either the owner's result is stored (and the others find it COMPLETED), or one
    of them takes the job over (and the owner's write is refused). Never two of these. The
    owner's write lands at a drawn moment around the lapse, so that both endings occur."""
    lease_s = 1.0
    draws = random.Random(5)
    owner, claimers = racers[0], racers[1:]

    async def takeover(store: DynamoDbStore, key: str, until: float) -> Claim | None:
        while time.monotonic() < until:
            claim = await store.claim(key, lease_s=30, fingerprint=FP)
            if claim.state is not ClaimState.BUSY or claim.lease_left_s > lease_s:
                return claim  # owned, completed, or taken over by another claimer
            await asyncio.sleep(0.005)  # ask again soon, without flooding the store
        return None

    async def late_completion(key: str, token: str, lapses_at: float, offset_s: float) -> bool:
        await asyncio.sleep(max(0.0, lapses_at + offset_s - time.monotonic()))
        try:
            await owner.complete(key, token, RESULT, ttl_s=3600)
        except ClaimLost:
            return False
        return True

    async def race(key: str) -> tuple[bool, list[Claim | None]]:
        first = await owner.claim(key, lease_s=lease_s, fingerprint=FP)
        assert first.state is ClaimState.OWNED
        lapses_at = time.monotonic() + lease_s
        await asyncio.sleep(lease_s - 0.1)
        # Long enough for 4,000 claimers to hear the answer on a busy machine; each stops at it.
        until = lapses_at + 30.0
        completed, *claims = await asyncio.gather(
            late_completion(key, first.token, lapses_at, draws.uniform(-0.2, 0.3)),
            *(takeover(store, key, until) for store in claimers * 2),
        )
        return completed, claims

    keys = [f"lapse#{i}" for i in range(400)]
    outcomes = await asyncio.gather(*(race(key) for key in keys))
    winners = {}
    for key, (completed, claims) in zip(keys, outcomes, strict=True):
        assert None not in claims, f"{key}: a claimer never learned who won"
        owned = sum(claim is not None and claim.state is ClaimState.OWNED for claim in claims)
        winners[key] = int(completed) + owned
        if completed:
            assert {claim.state for claim in claims if claim} == {ClaimState.COMPLETED}
    assert [key for key, won in winners.items() if won != 1] == []
    took_over = sum(
        any(claim is not None and claim.state is ClaimState.OWNED for claim in claims)
        for _completed, claims in outcomes
    )
    print(f"\nlease lapses: {took_over} taken over, {len(keys) - took_over} completed by the owner")
    assert 0 < took_over < len(keys), "the race was not run: one ending only"


async def test_a_completion_racing_its_own_heartbeat_stays_completed(
    racers: list[DynamoDbStore], endpoints: Endpoints, race_table: str
) -> None:
    """The heartbeat's extension and the completion cross: the extension either lands before
    the result (which ends the lease) or finds the job no longer in progress and writes nothing."""
    keys = [f"beat#{i}" for i in range(1000)]
    tokens = {}
    for key in keys:
        claim = await racers[0].claim(key, lease_s=30, fingerprint=FP)
        tokens[key] = claim.token
    await asyncio.gather(
        *(racers[0].complete(key, tokens[key], RESULT, ttl_s=3600) for key in keys),
        *(store.extend(key, tokens[key], lease_s=30) for key in keys for store in racers[1:]),
    )
    later = await asyncio.gather(
        *(racers[1].claim(key, lease_s=30, fingerprint=FP) for key in keys)
    )
    assert [claim.state for claim in later] == [ClaimState.COMPLETED] * len(keys)
    assert {claim.result for claim in later} == {RESULT}
    # And nothing of the lease is left on a finished job's record.
    dynamodb = aws_client("dynamodb", endpoints.tables)
    records = [
        dynamodb.get_item(TableName=race_table, Key={"pk": {"S": key}}, ConsistentRead=True)
        for key in keys
    ]
    assert [key for key, r in zip(keys, records, strict=True) if "lease_until" in r["Item"]] == []
