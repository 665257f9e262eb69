"""Encrypted password and code fields, end to end against moto's KMS over HTTP.

The producer library encrypts, the real worker decrypts just before its Cognito call, and the user
signs in with the password. A producer in another language (Node's @aws-crypto/client-node, Java)
cannot run here: the message format is checked against the Encryption SDK's own decrypt instead,
which is the implementation those SDKs interoperate with.
"""

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_encryption_sdk
import botocore.session
import pytest
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.key_providers.kms import StrictAwsKmsMasterKeyProvider

from tests.support.fault_proxy import FaultProxy
from tests.support.harness import (
    ResultCollector,
    _outputs,
    by_job_id,
    enqueue,
    finish,
    job,
    probe_http,
    read_results,
    run_worker,
    signs_in,
    start_worker,
    through,
    wait_for,
    worker_env,
)
from worker.contract.fields import FieldDecryptor, FieldEncryptor, encryption_context
from worker.local.aws import REGION, Stack, aws_client, free_port
from worker.producer import JobProducer

PASSWORDS = ["Enc-Passw0rd-Alpha!", "Enc-Passw0rd-Beta!", "Enc-Passw0rd-Gamma!"]


@pytest.fixture(autouse=True)
def local_kms(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test process's own SDK calls (the producer's KMS requests) go to the local AWS."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", stack.endpoints.moto)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def new_key(stack: Stack) -> str:
    kms = aws_client("kms", stack.endpoints.moto)
    return str(kms.create_key(Description="field encryption")["KeyMetadata"]["Arn"])


def encrypted_body(key_arn: str, **fields: Any) -> str:
    """A job body whose password / confirmation_code the producer library encrypted."""
    from worker.producer import prepare_job

    return prepare_job(fields, encryptor=FieldEncryptor(key_arn)).body


def dead_letters(stack: Stack) -> list[str]:
    sqs = aws_client("sqs", stack.endpoints.moto)
    bodies: list[str] = []
    while True:
        answer = sqs.receive_message(
            QueueUrl=stack.dead_letter_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        messages = answer.get("Messages", [])
        if not messages:
            return bodies
        bodies += [m["Body"] for m in messages]
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ]
        sqs.delete_message_batch(QueueUrl=stack.dead_letter_queue_url, Entries=entries)


def sdk_decrypt(key_arn: str, encrypted: str) -> tuple[bytes, dict[str, str]]:
    """The Encryption SDK's own decrypt, configured here and not by worker.contract.fields."""
    client = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )
    provider = StrictAwsKmsMasterKeyProvider(
        key_ids=[key_arn], botocore_session=botocore.session.Session()
    )
    plaintext, header = client.decrypt(source=base64.b64decode(encrypted), key_provider=provider)
    return plaintext, dict(header.encryption_context)


def tampered(encrypted: str) -> str:
    """The same message with one byte of its encrypted content flipped."""
    raw = bytearray(base64.b64decode(encrypted))
    raw[-20] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_encrypted_jobs_run_and_no_plaintext_rests_anywhere(stack: Stack) -> None:
    key = new_key(stack)
    with JobProducer(stack.jobs_queue_url, endpoint_url=stack.endpoints.moto, kms_key_arn=key) as p:
        p.send(
            {
                "version": 1,
                "type": "import_user",
                "job_id": "imp-1",
                "username": "ivy",
                "password": PASSWORDS[0],
                "user_attributes": {"email": "ivy@example.com"},
            }
        )
        p.send(
            {
                "version": 1,
                "type": "sign_up",
                "job_id": "su-1",
                "username": "ann",
                "password": PASSWORDS[1],
                "user_attributes": {"email": "ann@example.com"},
            }
        )
    sent = [json.loads(b) for b in _peek_bodies(stack)]
    assert all(
        isinstance(b["password"], dict) and set(b["password"]) == {"encrypted"} for b in sent
    )

    # The wire format, read by the SDK itself: the context and the envelope binding the job.
    by_id = {b["job_id"]: b for b in sent}
    plaintext, context = sdk_decrypt(key, by_id["imp-1"]["password"]["encrypted"])
    assert json.loads(plaintext) == {"job_id": "imp-1", "value": PASSWORDS[0]}
    assert encryption_context(None, "password").items() <= context.items()

    # Misuses: a flipped byte; a ciphertext moved to another job; one moved to another field.
    good = by_id["su-1"]["password"]["encrypted"]
    enqueue(
        stack,
        job("sign_up", job_id="tamper", username="tom", password={"encrypted": tampered(good)}),
        job("sign_up", job_id="moved", username="ann", password={"encrypted": good}),
        job("confirm_sign_up", job_id="field", username="ann",
            confirmation_code={"encrypted": good}),
    )  # fmt: skip
    run = run_worker(stack, FIELD_ENCRYPTION_KEY_ARNS=key, LOG_LEVEL="DEBUG")
    assert run.returncode == 0, run.stderr
    results = read_results(stack)
    outcome = by_job_id(results)
    assert outcome["imp-1"]["status"] == "succeeded"
    assert outcome["su-1"]["status"] == "succeeded"
    for refused in ("tamper", "moved", "field"):
        assert outcome[refused]["status"] == "rejected", outcome[refused]
        assert outcome[refused]["error"]["code"] == "UndecryptableField"
    assert "another job" in outcome["moved"]["error"]["message"]
    assert "another client or field" in outcome["field"]["error"]["message"]

    # The users have the passwords the producer encrypted, and no other.
    assert signs_in(stack, "ivy", PASSWORDS[0])
    assert not signs_in(stack, "ivy", PASSWORDS[1])
    aws_client("cognito-idp", stack.endpoints.moto).admin_confirm_sign_up(
        UserPoolId=stack.user_pool_id, Username="ann"
    )
    assert signs_in(stack, "ann", PASSWORDS[1])

    letters = dead_letters(stack)
    assert len(letters) == 3  # the rejected ones, still encrypted
    seen = "\n".join([run.stdout, run.stderr, *(r.raw for r in results), *letters])
    assert "job finished" in seen
    assert [p for p in PASSWORDS if p in seen] == []


def _peek_bodies(stack: Stack) -> Iterator[str]:
    """The queued bodies, made visible again at once."""
    sqs = aws_client("sqs", stack.endpoints.moto)
    answer = sqs.receive_message(
        QueueUrl=stack.jobs_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    for message in answer.get("Messages", []):
        sqs.change_message_visibility(
            QueueUrl=stack.jobs_queue_url, ReceiptHandle=message["ReceiptHandle"],
            VisibilityTimeout=0,
        )  # fmt: skip
        yield message["Body"]


def raw_key_body(**fields: Any) -> str:
    """A job whose password a producer encrypted under its own raw AES key, not under KMS: the
    message format is right, and no key the worker may use will ever open it."""
    from aws_encryption_sdk.identifiers import EncryptionKeyType, WrappingAlgorithm
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKey, RawMasterKeyConfig

    class OwnKey(RawMasterKey):  # type: ignore[misc]
        provider_id = "producer-own"

    own_key = OwnKey(
        config=RawMasterKeyConfig(
            key_id=b"own-key",
            provider_id="producer-own",
            wrapping_key=WrappingKey(
                wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
                wrapping_key=b"k" * 32,
                wrapping_key_type=EncryptionKeyType.SYMMETRIC,
            ),
        )
    )
    envelope = json.dumps({"job_id": fields["job_id"], "value": fields.pop("password")})
    ciphertext, _ = aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    ).encrypt(
        source=envelope.encode(),
        key_provider=own_key,
        encryption_context=encryption_context(None, "password"),
    )
    encrypted = {"encrypted": base64.b64encode(ciphertext).decode()}
    return json.dumps({"version": 1, **fields, "password": encrypted})


@pytest.mark.parametrize("premise", ["another_kms_key", "a_raw_key", "no_key_configured"])
def test_a_message_no_accepted_key_opens_is_rejected_while_the_other_jobs_flow(
    stack: Stack, premise: str
) -> None:
    """A ciphertext that no key the worker accepts can open is the message's fault: it is
    rejected with its reason, and the client's breaker stays closed for the jobs behind it."""
    worker_key, other_key = new_key(stack), new_key(stack)
    fields = {"type": "sign_up", "job_id": "sealed", "username": "ann", "password": PASSWORDS[0]}
    if premise == "a_raw_key":
        sealed = raw_key_body(**fields)
    else:
        sealed = encrypted_body(worker_key if premise == "no_key_configured" else other_key,
                                version=1, **fields)  # fmt: skip
    plain = [job("sign_up", job_id=f"next-{n}", username=f"next-{n}", password=PASSWORDS[1])
             for n in range(3)]  # fmt: skip
    enqueue(stack, sealed, *plain)
    port = free_port()
    keys = {} if premise == "no_key_configured" else {"FIELD_ENCRYPTION_KEY_ARNS": worker_key}
    worker = start_worker(stack, HEALTH_PORT=str(port), **keys)
    try:
        results = ResultCollector(stack)
        collected = wait_for(lambda: len(results.poll()) == 4 and results.results, timeout_s=60)
        status, readiness = probe_http(port, "/readyz")
    finally:
        worker.send_signal(signal.SIGTERM)
        run = finish(worker)
    outcome = by_job_id(collected)
    assert outcome["sealed"]["status"] == "rejected"
    assert outcome["sealed"]["error"]["code"] == "UndecryptableField"
    assert "password" in outcome["sealed"]["error"]["message"]
    assert [outcome[f"next-{n}"]["status"] for n in range(3)] == ["succeeded"] * 3
    assert status == 200, readiness
    assert not run.events("configuration error: this client takes no work until a probe passes")
    assert stack.queue_depth(stack.jobs_queue_url) == 0  # none left to come back
    assert "Task exception was never retrieved" not in run.stdout
    (copy,) = dead_letters(stack)
    assert json.loads(copy)["password"] == json.loads(sealed)["password"]  # still sealed
    assert PASSWORDS[0] not in "".join([run.stdout, run.stderr, copy, *(r.raw for r in collected)])


def _handed_back(worker: Any) -> bool:
    """Whether the running worker has logged a hand-back (its output is a temporary file)."""
    return _logged(worker, "job handed back to the queue")


def _logged(worker: Any, event: str) -> bool:
    """Whether the running worker has logged ``event`` so far."""
    stdout = _outputs[worker.pid][0]
    stdout.seek(0)
    return f'"event": "{event}"' in stdout.read()


def test_a_refusal_that_lasts_keeps_the_breaker_open_until_it_is_lifted(
    stack: Stack, proxy: FaultProxy
) -> None:
    """The breaker's probe rechecks KMS, not only Cognito: no flapping while KMS refuses.

    How the refusal is produced: moto's KMS enforces neither IAM nor the key policy on Decrypt,
    and decrypts under a disabled key too (moto 5.2.5, checked), so neither can refuse here. The
    fault proxy answers the worker's Decrypt calls as KMS answers a role without kms:Decrypt
    (400 AccessDeniedException); removing the rule is the permission granted. The Cognito calls
    pass through untouched, so the Cognito probe passes all along: only the recheck of KMS can
    keep the breaker open.
    """
    key = new_key(stack)
    enqueue(stack, encrypted_body(key, version=1, type="import_user", job_id="held",
                                  username="hal", password=PASSWORDS[1]))  # fmt: skip
    port = free_port()
    denied = proxy.add_rule("access_denied", service="kms", operation="Decrypt")
    settings = through(
        proxy.url,
        FIELD_ENCRYPTION_KEY_ARNS=key,
        HEALTH_PORT=str(port),
        BREAKER_COOLDOWN_S="1",
        BREAKER_MAX_COOLDOWN_S="2",
    )
    worker = start_worker(stack, **settings)
    try:
        # The cool-down passed, the Cognito probe passed, the recheck was refused: still open.
        wait_for(lambda: _logged(worker, "configuration probe failed"), timeout_s=60)
        status, readiness = probe_http(port, "/readyz")
        assert status == 503, readiness
        assert readiness["status"] == "configuration error"
        (reason,) = readiness["clients"].values()
        assert reason.startswith("FieldDecryptionRefused ("), reason
        assert "111122223333" not in json.dumps(readiness)  # codes and hints only
        assert read_results(stack) == []  # nothing failed for the deployment's mistake
        assert stack.queue_depth(stack.jobs_queue_url) == 1  # and nothing lost
        # The job's own Decrypt and the recheck's, at least: both answered by "KMS".
        assert proxy.stats()["faults"]["access_denied"] >= 2

        proxy.remove_rule(denied)  # the task role may decrypt again
        results = wait_for(lambda: read_results(stack), timeout_s=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        run = finish(worker)
    assert run.returncode == 0, run.stdout[-3000:]
    assert [r.body["status"] for r in results] == ["succeeded"]
    assert signs_in(stack, "hal", PASSWORDS[1])
    failed = run.events("configuration probe failed")
    assert {event["error_code"] for event in failed} == {"FieldDecryptionRefused"}
    assert len(run.events("configuration probe passed: taking work again")) == 1
    # One trip, by the job: the breaker never closed while KMS refused, so the job never came
    # back to trip it again (before the recheck, each passing Cognito probe let it do so).
    assert (
        len(run.events("configuration error: this client takes no work until a probe passes")) == 1
    )
    assert run.stdout.index('"configuration probe passed') > run.stdout.rindex(
        '"configuration probe failed'
    )
    assert PASSWORDS[1] not in run.stdout + run.stderr


def test_kms_unreachable_hands_the_job_back_then_it_runs(stack: Stack, proxy: FaultProxy) -> None:
    key = new_key(stack)
    enqueue(stack, encrypted_body(key, version=1, type="import_user", job_id="un",
                                  username="uma", password=PASSWORDS[2]))  # fmt: skip
    settings = through(proxy.url, FIELD_ENCRYPTION_KEY_ARNS=key, RETRY_BACKOFF_CAP_S="1")
    with proxy.fault("unreachable", service="kms"):
        worker = start_worker(stack, **settings)
        wait_for(lambda: proxy.stats()["faults"].get("unreachable", 0) >= 1, timeout_s=60)
        wait_for(lambda: _handed_back(worker), timeout_s=60)
    results = wait_for(lambda: read_results(stack), timeout_s=60)
    worker.send_signal(signal.SIGTERM)
    run = finish(worker)
    assert [r.body["status"] for r in results] == ["succeeded"]
    handed = run.events("job handed back to the queue")
    assert handed[0]["error_code"] == "KMSUnavailable"
    assert signs_in(stack, "uma", PASSWORDS[2])
    assert PASSWORDS[2] not in run.stdout + run.stderr


def test_a_hanging_kms_ends_a_decryption_in_seconds_and_the_job_goes_back(
    stack: Stack, proxy: FaultProxy
) -> None:
    """KMS calls time out in seconds (5 s read, two tries), not the SDK's 60 s: a KMS brownout
    cannot outlast the message's visibility or hold the decryption threads."""
    key = new_key(stack)
    enqueue(stack, encrypted_body(key, version=1, type="import_user", job_id="slow",
                                  username="sol", password=PASSWORDS[0]))  # fmt: skip
    settings = through(proxy.url, FIELD_ENCRYPTION_KEY_ARNS=key, RETRY_BACKOFF_CAP_S="1")
    with proxy.fault("timeout", service="kms", operation="Decrypt", latency_s=120):
        started = time.monotonic()
        worker = start_worker(stack, **settings)
        wait_for(lambda: _handed_back(worker), timeout_s=60)
        handed_back_after_s = time.monotonic() - started
    results = wait_for(lambda: read_results(stack), timeout_s=60)
    worker.send_signal(signal.SIGTERM)
    run = finish(worker)
    # Two tries of 5 s each, and the worker's start: far inside the 60 s visibility timeout.
    assert handed_back_after_s < 25, handed_back_after_s
    assert run.events("job handed back to the queue")[0]["error_code"] == "KMSUnavailable"
    assert [r.body["status"] for r in results] == ["succeeded"]
    assert signs_in(stack, "sol", PASSWORDS[0])


def test_mandatory_encryption_rejects_plaintext_and_keeps_no_copy(stack: Stack) -> None:
    key = new_key(stack)
    enqueue(
        stack,
        job("sign_up", job_id="plain", username="pat", password=PASSWORDS[0]),
        job("confirm_sign_up", job_id="plain-code", username="pat", confirmation_code="C0DE-PLAIN"),
        encrypted_body(key, version=1, type="import_user", job_id="enc", username="eve",
                       password=PASSWORDS[1]),
    )  # fmt: skip
    run = run_worker(stack, FIELD_ENCRYPTION_KEY_ARNS=key, REQUIRE_ENCRYPTED_FIELDS="true")
    assert run.returncode == 0, run.stderr
    results = read_results(stack)
    outcome = by_job_id(results)
    for plain in ("plain", "plain-code"):
        assert outcome[plain]["status"] == "rejected"
        assert outcome[plain]["error"]["code"] == "PlaintextSecretField"
    assert outcome["enc"]["status"] == "succeeded"
    assert dead_letters(stack) == []  # the plaintext body was copied nowhere
    seen = "\n".join([run.stdout, run.stderr, *(r.raw for r in results)])
    assert PASSWORDS[0] not in seen
    assert "C0DE-PLAIN" not in seen


def test_a_rejected_jobs_dlq_copy_keeps_no_plaintext_secret(stack: Stack) -> None:
    enqueue(
        stack,
        job("sign_up", job_id="unknown-client", client_id="nope", username="ann",
            password=PASSWORDS[0]),
        job("confirm_forgot_password", job_id="extra", username="ann", password=PASSWORDS[1],
            confirmation_code="C0DE-DLQ-1", pin=1),
        job("sign_up", job_id="bad-password", username="ann", password=PASSWORDS[2] + " x"),
    )  # fmt: skip
    run = run_worker(stack)
    assert run.returncode == 0, run.stderr
    outcome = by_job_id(read_results(stack))
    assert {outcome[j]["status"] for j in ("unknown-client", "extra", "bad-password")} == {
        "rejected"
    }
    letters = [json.loads(body) for body in dead_letters(stack)]
    assert sorted(letter["job_id"] for letter in letters) == [
        "bad-password", "extra", "unknown-client"
    ]  # fmt: skip
    for letter in letters:
        assert "password" not in letter
        assert "confirmation_code" not in letter
        assert letter["username"] == "ann"  # the rest is kept, to see what went wrong


def test_kms_calls_and_cpu_per_job_for_200_jobs(stack: Stack, proxy: FaultProxy) -> None:
    """The data-key caches at work: a handful of KMS calls for 200 jobs, on each side."""
    key = new_key(stack)
    count = 200
    producer_proxy = {"AWS_ENDPOINT_URL_KMS": proxy.url}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in producer_proxy.items():
            patch.setenv(name, value)
        encryptor = FieldEncryptor(key)
        started = time.process_time()
        encrypted = [
            encryptor.encrypt(f"Passw0rd-{i}!", job_id=f"job-{i}", client_id=None, field="password")
            for i in range(count)
        ]
        encrypt_cpu_ms = (time.process_time() - started) * 1000 / count
        encrypt_calls = sum(proxy.stats()["calls"].get("kms", {}).values())
        proxy.reset_stats()
        decryptor = FieldDecryptor([key])
        started = time.process_time()
        for i, value in enumerate(encrypted):
            plain = decryptor.decrypt(value, job_id=f"job-{i}", client_id=None, field="password")
            assert plain == f"Passw0rd-{i}!"
        decrypt_cpu_ms = (time.process_time() - started) * 1000 / count
        decrypt_calls = sum(proxy.stats()["calls"].get("kms", {}).values())
    print(
        f"\n{count} jobs: KMS calls encrypt={encrypt_calls} decrypt={decrypt_calls}; "
        f"CPU per field encrypt={encrypt_cpu_ms:.2f} ms decrypt={decrypt_cpu_ms:.2f} ms"
    )
    assert encrypt_calls == 1  # one GenerateDataKey for the whole run
    assert decrypt_calls == 1  # one Decrypt of that data key
    assert decrypt_cpu_ms < 100  # a wide margin on a loaded machine; the figure is printed


def test_the_import_command_encrypts_with_its_key(stack: Stack, tmp_path: Path) -> None:
    """Under mandatory encryption, only encrypted jobs succeed: the import's were encrypted."""
    key = new_key(stack)
    path = tmp_path / "users.jsonl"
    rows = [{"username": f"imp{i}", "password": PASSWORDS[i], "email": f"i{i}@example.com"}
            for i in range(2)]  # fmt: skip
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    settings = {"FIELD_ENCRYPTION_KEY_ARNS": key, "REQUIRE_ENCRYPTED_FIELDS": "true"}
    worker = start_worker(stack, **settings)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "worker", "import", path.name, "--type", "import_user",
             "--kms-key-arn", key, "--wait", "--report", "r.csv"],
            env=worker_env(stack), cwd=tmp_path, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip
    finally:
        worker.send_signal(signal.SIGTERM)
        run = finish(worker)
    assert done.returncode == 0, done.stdout + done.stderr
    report = (tmp_path / "r.csv").read_text(encoding="utf-8")
    assert report.count("succeeded") == 2, report
    assert signs_in(stack, "imp1", PASSWORDS[1])
    seen = "\n".join([done.stdout, done.stderr, report, run.stdout, run.stderr])
    assert [p for p in PASSWORDS[:2] if p in seen] == []
