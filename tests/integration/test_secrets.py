"""No password, code, client secret or SecretHash in the logs or the published results.

Every job type and every failure path runs with known secret values, at LOG_LEVEL=DEBUG; then the
whole captured output of the worker process and every published result body are searched.
"""

import socket
import subprocess
import sys

from tests.support.harness import (
    create_confirmed_user,
    create_unconfirmed_user,
    enqueue,
    job,
    read_results,
    run_worker,
)
from worker.cognito.secret_hash import secret_hash
from worker.local.aws import Stack

PASSWORDS = ["Leak-Passw0rd-Alpha!", "Leak-N3w-Passw0rd-Beta!", "leakweak"]
CODES = ["CODE-Gamma-771", "CODE-Delta-772"]
WRONG_SECRET = "wrong-secret-Epsilon-773"
USERNAMES = ["ann", "bob", "carl", "dana", "erin", "fay", "ghost", "walt"]


def test_no_secret_appears_in_logs_or_results(stack: Stack) -> None:
    create_confirmed_user(stack, "bob")
    create_unconfirmed_user(stack, "carl")
    create_unconfirmed_user(stack, "dana")
    create_confirmed_user(stack, "erin")
    create_confirmed_user(stack, "fay")
    every_path = [
        job("sign_up", job_id="s-ok", username="ann", password=PASSWORDS[0],
            user_attributes={"email": "ann@example.com"}),
        job("sign_up", job_id="s-exists", username="bob", password=PASSWORDS[0]),
        job("sign_up", job_id="s-weak", username="walt", password=PASSWORDS[2]),
        job("confirm_sign_up", job_id="c-ok", username="carl", confirmation_code=CODES[0]),
        job("confirm_sign_up", job_id="c-ghost", username="ghost", confirmation_code=CODES[1]),
        job("resend_confirmation_code", job_id="r-ok", username="dana"),
        job("forgot_password", job_id="f-ok", username="erin"),
        job("confirm_forgot_password", job_id="cf-ok", username="fay",
            confirmation_code=CODES[0], password=PASSWORDS[1]),
        # Malformed, with the secrets in the wrong places:
        job("confirm_forgot_password", job_id="m-1", username="fay", confirmation_code=CODES[1],
            password=PASSWORDS[1] + " with spaces"),
        job("sign_up", job_id="m-2", username="ann", password=PASSWORDS[0], pin=CODES[1]),
        '{"version": 1, "type": "sign_up", "password": "' + PASSWORDS[0] + '", ',
    ]  # fmt: skip
    enqueue(stack, *every_path)
    output = run_worker(stack, LOG_LEVEL="DEBUG")
    assert output.returncode == 0
    results = read_results(stack)
    assert len(results) == len(every_path)

    # The configuration-error path (wrong secret) and the transient path (moto's HTTP 500).
    enqueue(stack, job("forgot_password", job_id="wrong", username="erin"))
    wrong = run_worker(stack, LOG_LEVEL="DEBUG", COGNITO_CLIENT_SECRET=WRONG_SECRET)
    enqueue(stack, job("resend_confirmation_code", job_id="t", username="dana"))
    transient = run_worker(
        stack, LOG_LEVEL="DEBUG", RETRY_MAX_ATTEMPTS="2", RETRY_BACKOFF_CAP_S="1",
        AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=stack.endpoints.moto,
    )  # fmt: skip
    # Found by the probe at start, before the job was received: its log lines carry Cognito's
    # answer to a request hashed with the wrong secret.
    assert wrong.events("configuration error: this client takes no work until a probe passes")
    assert transient.events("job handed back to the queue")

    secrets = [*PASSWORDS, *CODES, stack.client_secret, WRONG_SECRET]
    for username in USERNAMES:
        secrets.append(secret_hash(username, stack.client_id, stack.client_secret))
        secrets.append(secret_hash(username, stack.client_id, WRONG_SECRET))
    seen = "\n".join(
        [output.stdout, output.stderr, wrong.stdout, wrong.stderr, transient.stdout,
         transient.stderr, *(r.raw for r in results), *(str(r.attributes) for r in results)]
    )  # fmt: skip
    assert "job finished" in seen  # the logs were captured
    leaked = [secret for secret in secrets if secret in seen]
    assert leaked == []


# A Cognito call that fails with the password in its frames: in a local, in a request dict, and in
# the gateway's own request (with the SecretHash). No worker path logs such a traceback today; the
# worker's logging setup must keep any future one clean, through structlog and through the stdlib
# (asyncio's own handler).
_TRACEBACK_SCRIPT = """
import asyncio, json, sys
import aioboto3
from aiobotocore.config import AioConfig
from worker.cognito.gateway import CognitoGateway, request_secrets
from worker.contract.jobs import decode_job
from worker.telemetry.logs import configure_logging, get_logger, masking, register_secret
from worker.settings import AppClient

endpoint, body, client_secret = sys.argv[1:4]
configure_logging("DEBUG", "json")
register_secret(client_secret)
log = get_logger("frames")
app_client = AppClient(
    client_id="1example23456789", user_pool_id="eu-west-1_AbCdEf123", client_secret=client_secret
)

async def main() -> None:
    session = aioboto3.Session(
        region_name="eu-west-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    config = AioConfig(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1)
    async with session.client("cognito-idp", endpoint_url=endpoint, config=config) as client:
        gateway = CognitoGateway({"eu-west-1": client})
        # What a frame reading a job holds: the password alone, and in a request dict.
        password = json.loads(body)["password"]
        request = {"Password": password, "Username": "ann"}
        job = decode_job(body)
        try:
            await gateway.execute(job, app_client, "tb-1")
        except Exception:
            log.exception("sign-up failed, outside the job's registration")
        with masking(request_secrets(job, app_client)):
            try:
                await gateway.execute(job, app_client, "tb-1")
            except Exception:
                log.exception("sign-up failed, inside the job")
            task = asyncio.get_running_loop().create_task(gateway.execute(job, app_client, "tb-1"))
            await asyncio.wait([task])
            # The task is dropped unread: asyncio reports it through the stdlib logger.
            del task
        assert request["Password"] == password

asyncio.run(main())
"""


def test_a_traceback_with_secrets_in_its_frames_leaves_no_trace_of_them() -> None:
    password = "Traceback-Passw0rd-" + "x" * 60 + "-End!"  # long: a repr would cut it short
    client_secret = "Zeta-client-secret-for-frames-99"
    with socket.socket() as closed:  # a port nothing listens on: every call fails to connect
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    body = job("sign_up", job_id="tb-1", username="ann", password=password)
    done = subprocess.run(
        [sys.executable, "-c", _TRACEBACK_SCRIPT, endpoint, body, client_secret],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert output.count('"exception"') == 3  # the three tracebacks were written, frames and all
    assert "execute" in output
    hashed = secret_hash("ann", "1example23456789", client_secret)
    leaked = [
        fragment
        for secret in (password, client_secret, hashed)
        for fragment in (secret[:6], secret[-6:])
        if fragment in output
    ]
    assert leaked == []
