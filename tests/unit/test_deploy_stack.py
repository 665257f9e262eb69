"""The deploy stack and the local AWS agree on what the tests rely on."""

import re
from pathlib import Path

from cfnlint.decode import cfn_yaml

from worker.local.aws import MAX_RECEIVE_COUNT
from worker.settings import INTERACTIVE_JOB_TYPES

STACK = Path(__file__).parents[2] / "deploy" / "cloudformation.yaml"


def test_the_local_queues_redrive_like_the_deployed_one() -> None:
    counts = re.findall(r"^\s*maxReceiveCount:\s*(\d+)", STACK.read_text(), flags=re.MULTILINE)
    assert counts == [str(MAX_RECEIVE_COUNT)]


def test_the_stack_accepts_by_default_the_job_types_the_worker_accepts_by_default() -> None:
    template = cfn_yaml.load(str(STACK))
    default = template["Parameters"]["AcceptedJobTypes"]["Default"]
    assert default.split(",") == [job_type.value for job_type in INTERACTIVE_JOB_TYPES]
    assert "import_user" not in default
    environment = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0][
        "Environment"
    ]
    assert {"Name": "ACCEPTED_JOB_TYPES", "Value": {"Ref": "AcceptedJobTypes"}} in environment
