"""Integration fixtures: the local AWS (moto server and the Cognito front) over HTTP on 127.0.0.1.

It is started once per test session, in a child process on free ports; every test provisions its
own pool, queues and topic in it, so tests do not see each other's messages.
"""

import re
import uuid
from collections.abc import Iterator

import pytest

from tests.support.fault_proxy import FaultProxy, running_proxy
from worker.local_aws import Endpoints, Stack, local_aws, provision


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    with local_aws() as started:
        yield started


@pytest.fixture
def stack(endpoints: Endpoints, request: pytest.FixtureRequest) -> Stack:
    name = re.sub(r"[^A-Za-z0-9-]", "-", request.node.name)[:40]
    return provision(endpoints, f"{name}-{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def module_proxy(endpoints: Endpoints) -> Iterator[FaultProxy]:
    """The fault proxy in front of the local AWS, one per test module."""
    with running_proxy(endpoints.moto, endpoints.cognito, seed=7) as proxy:
        yield proxy


@pytest.fixture
def proxy(module_proxy: FaultProxy) -> Iterator[FaultProxy]:
    """The module's fault proxy with no rules and fresh counters."""
    module_proxy.clear_rules()
    module_proxy.reset_stats()
    yield module_proxy
    module_proxy.clear_rules()
