"""No password, code, client secret or SecretHash in the logs or the published results.

Every job type and every failure path runs with known secret values, at LOG_LEVEL=DEBUG; then the
whole captured output of the worker process and every published result body are searched.
"""

from tests.support.harness import (
    create_confirmed_user,
    create_unconfirmed_user,
    enqueue,
    job,
    read_results,
    run_worker,
)
from worker.local_aws import Stack
from worker.secret_hash import secret_hash

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
    assert wrong.events("job handed back to the queue")
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
