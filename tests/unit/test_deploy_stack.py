"""The deploy stack and the local AWS agree on what the tests rely on."""

import re
from pathlib import Path

from worker.local_aws import MAX_RECEIVE_COUNT

STACK = Path(__file__).parents[2] / "deploy" / "cloudformation.yaml"


def test_the_local_queues_redrive_like_the_deployed_one() -> None:
    counts = re.findall(r"^\s*maxReceiveCount:\s*(\d+)", STACK.read_text(), flags=re.MULTILINE)
    assert counts == [str(MAX_RECEIVE_COUNT)]
