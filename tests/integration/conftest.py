"""Integration fixtures: the local AWS (moto server and the Cognito front, and dynalite for
DynamoDB) over HTTP on 127.0.0.1.

It is started once per test session, in child processes on free ports; every test provisions its
own pool, queues and topic in it (and its own table), so tests do not see each other's messages.

DynamoDB comes from dynalite, whose conditional writes are atomic as DynamoDB's are (moto's are
not: two claims of one job sent at once can both win there). SQS and SNS come from moto unless a
module parametrises ``emulator`` with ``"fauxqs"``: then a third emulator, fauxqs, serves them
(started once, when first asked for), and moto keeps Cognito and KMS. Behaviour that holds on
both rests on SQS's contract, not on one emulator's quirks.
"""

import dataclasses
import re
import uuid
from collections.abc import Iterator

import pytest

from tests.support.dynalite import running_dynalite
from tests.support.fault_proxy import FaultProxy, running_proxy
from tests.support.fauxqs import running_fauxqs
from worker.local.aws import Endpoints, Stack, local_aws, provision

#: Mark a module with this to run its tests against both SQS/SNS emulators.
BOTH_EMULATORS = pytest.mark.parametrize("emulator", ["moto", "fauxqs"], indirect=True)


@pytest.fixture(scope="session")
def local_endpoints() -> Iterator[Endpoints]:
    with local_aws() as started, running_dynalite() as tables:
        yield dataclasses.replace(started, dynamodb=tables)


@pytest.fixture(scope="session")
def fauxqs_url() -> Iterator[str]:
    with running_fauxqs() as url:
        yield url


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> str:
    """Which emulator serves SQS and SNS: moto, unless the test is parametrised."""
    return str(getattr(request, "param", "moto"))


@pytest.fixture
def endpoints(
    local_endpoints: Endpoints, emulator: str, request: pytest.FixtureRequest
) -> Endpoints:
    if emulator == "fauxqs":
        return dataclasses.replace(local_endpoints, sqs_sns=request.getfixturevalue("fauxqs_url"))
    return local_endpoints


@pytest.fixture
def stack(endpoints: Endpoints, request: pytest.FixtureRequest) -> Stack:
    name = re.sub(r"[^A-Za-z0-9-]", "-", request.node.name)[:40]
    return provision(endpoints, f"{name}-{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def module_proxy(local_endpoints: Endpoints) -> Iterator[FaultProxy]:
    """The fault proxy in front of the local AWS, one per test module."""
    with running_proxy(
        local_endpoints.moto,
        local_endpoints.cognito,
        seed=7,
        upstream_dynamodb=local_endpoints.tables,
    ) as proxy:
        yield proxy


@pytest.fixture
def proxy(module_proxy: FaultProxy) -> Iterator[FaultProxy]:
    """The module's fault proxy with no rules and fresh counters."""
    module_proxy.clear_rules()
    module_proxy.reset_stats()
    yield module_proxy
    module_proxy.clear_rules()
