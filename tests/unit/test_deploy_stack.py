"""The deploy stack and the local AWS agree on what the tests rely on."""

import re
from pathlib import Path

from annotated_types import Ge, Le
from cfnlint.decode import cfn_yaml

from worker.local.aws import DEVELOPER_RATES_RPS, MAX_RECEIVE_COUNT, VISIBILITY_TIMEOUT_S
from worker.settings import INTERACTIVE_JOB_TYPES, Settings

STACK = Path(__file__).parents[2] / "deploy" / "cloudformation.yaml"


def test_the_local_queues_redrive_like_the_deployed_ones() -> None:
    """Both lanes' jobs queues, the interactive and the bulk one."""
    counts = re.findall(r"^\s*maxReceiveCount:\s*(\d+)", STACK.read_text(), flags=re.MULTILINE)
    assert counts == [str(MAX_RECEIVE_COUNT)] * 2


def test_the_local_queues_hide_a_message_as_long_as_the_deployed_ones_and_the_worker() -> None:
    """Both lanes' jobs queues: the queue's VisibilityTimeout, the stack's and the local one, is
    the worker's VISIBILITY_TIMEOUT_S, so `check` finds them agreeing."""
    template = cfn_yaml.load(str(STACK))
    for queue in ("JobsQueue", "BulkJobsQueue"):
        properties = template["Resources"][queue]["Properties"]
        assert properties["VisibilityTimeout"] == VISIBILITY_TIMEOUT_S, queue
    assert Settings.model_fields["visibility_timeout_s"].default == VISIBILITY_TIMEOUT_S


def test_the_local_budgets_are_the_stacks_defaults_below_the_free_quotas() -> None:
    template = cfn_yaml.load(str(STACK))
    parameters = {
        "RATE_USER_CREATION_RPS": "RateUserCreationRps",
        "RATE_USER_ACCOUNT_RECOVERY_RPS": "RateUserAccountRecoveryRps",
        "RATE_USER_RESOURCE_READ_RPS": "RateUserResourceReadRps",
    }
    for variable, parameter in parameters.items():
        default = template["Parameters"][parameter]["Default"]
        assert float(DEVELOPER_RATES_RPS[variable]) == float(default), variable


def test_the_stack_accepts_by_default_the_job_types_the_worker_accepts_by_default() -> None:
    template = cfn_yaml.load(str(STACK))
    default = template["Parameters"]["AcceptedJobTypes"]["Default"]
    assert default.split(",") == [job_type.value for job_type in INTERACTIVE_JOB_TYPES]
    assert "import_user" not in default
    environment = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0][
        "Environment"
    ]
    assert {"Name": "ACCEPTED_JOB_TYPES", "Value": {"Ref": "AcceptedJobTypes"}} in environment


def test_the_reserved_share_parameter_has_the_settings_default_and_bounds() -> None:
    """A value the parameter allows is one the worker accepts, and the default is the worker's
    own (0: priority alone)."""
    template = cfn_yaml.load(str(STACK))
    parameter = template["Parameters"]["InteractiveReservedShare"]
    field = Settings.model_fields["interactive_reserved_share"]
    (lowest,) = [m.ge for m in field.metadata if isinstance(m, Ge)]
    (highest,) = [m.le for m in field.metadata if isinstance(m, Le)]
    assert (parameter["MinValue"], parameter["MaxValue"]) == (lowest, highest)
    assert parameter["Default"] == field.default == 0
    environment = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0][
        "Environment"
    ]
    share = {"Name": "INTERACTIVE_RESERVED_SHARE", "Value": {"Ref": "InteractiveReservedShare"}}
    assert share in environment
