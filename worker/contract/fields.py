"""Field-level encryption of a job's secret fields (``password``, ``confirmation_code``).

A producer encrypts each secret field with the AWS Encryption SDK under a KMS key; the job then
carries ``{"encrypted": "<base64 ESDK message>"}`` where the plain string would be. Only the
worker, whose role alone may ``kms:Decrypt``, reads it back, just before its Cognito call.

What binds a ciphertext to its job, so that it cannot be moved to another one:

- the SDK's encryption context (authenticated, and sent to KMS with every data-key request):
  ``cognito-worker:client_id`` (the job's ``client_id``, or ``(default)`` when it names none) and
  ``cognito-worker:field`` (the field's name);
- the encrypted text itself, a JSON envelope ``{"job_id": ..., "value": ...}``: the job id lives
  inside the authenticated plaintext rather than in the context, because KMS sees the context and
  the data-key caches are keyed by it: a context that differed per job would cost one KMS call per
  job on both sides, the very thing the cache is there to avoid.

Data keys are cached (the SDK's :class:`CachingCryptoMaterialsManager`): a producer encrypts many
jobs under one data key, and the worker decrypts them after one ``kms:Decrypt``. The algorithm is
the SDK's committing suite without an ECDSA signature (``AES_256_GCM_HKDF_SHA512_COMMIT_KEY``):
a third smaller, and the key policy already says who may encrypt.

The SDK is synchronous and calls KMS through botocore: the worker runs it in a thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import struct
import threading
from collections.abc import Sequence
from typing import Any

import aws_encryption_sdk
import botocore.session
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.caches.local import LocalCryptoMaterialsCache
from aws_encryption_sdk.exceptions import AWSEncryptionSDKClientError, DecryptKeyError
from aws_encryption_sdk.identifiers import Algorithm
from aws_encryption_sdk.key_providers.kms import StrictAwsKmsMasterKeyProvider
from aws_encryption_sdk.materials_managers.caching import CachingCryptoMaterialsManager
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidSignature, InvalidTag
from pydantic import ValidationError

from worker.contract.jobs import (
    JOB_ADAPTER,
    JOB_MODELS,
    EncryptedSecret,
    Job,
    encode_job,
    parse_json_object,
    validation_reason,
)

#: The job fields that may be encrypted (and, under REQUIRE_ENCRYPTED_FIELDS, must be).
SECRET_FIELDS = ("password", "confirmation_code")
CONTEXT_CLIENT_ID = "cognito-worker:client_id"
CONTEXT_FIELD = "cognito-worker:field"
DEFAULT_CLIENT = "(default)"
ALGORITHM = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY

# A data key serves this long, and this many messages, before KMS is asked for another.
CACHE_MAX_AGE_S = 300.0
CACHE_MAX_MESSAGES = 100_000
CACHE_CAPACITY = 1000
# KMS calls end within (3 + 5) s x 2 tries at most.
KMS_CONNECT_TIMEOUT_S = 3
KMS_READ_TIMEOUT_S = 5

# The SDK logs each KMS failure with a traceback before raising it; the caller classifies the
# error and logs it once, in the worker's own terms.
logging.getLogger("aws_encryption_sdk").setLevel(logging.CRITICAL)


class FieldUnreadable(Exception):
    """The ciphertext is not one this job's producer made for it: tampered, truncated, made for
    another job, client or field, or not an Encryption SDK message at all. The job is to blame."""


class FieldKeyRefused(Exception):
    """KMS would not decrypt the data key: a key the worker is not configured to accept, or a
    permission missing. The deployment is to blame, not the job."""


class FieldKeyUnreachable(Exception):
    """KMS could not be reached or failed: nothing is known about the job; try again later."""


def encryption_context(client_id: str | None, field: str) -> dict[str, str]:
    """The Encryption SDK context a secret field of a job for ``client_id`` is encrypted under."""
    return {CONTEXT_CLIENT_ID: client_id or DEFAULT_CLIENT, CONTEXT_FIELD: field}


def _client() -> Any:
    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )


def _materials(
    key_arns: Sequence[str], max_age_s: float, session: botocore.session.Session | None = None
) -> CachingCryptoMaterialsManager:
    session = session or _kms_session()
    provider = StrictAwsKmsMasterKeyProvider(key_ids=list(key_arns), botocore_session=session)
    return CachingCryptoMaterialsManager(
        master_key_provider=provider,
        cache=LocalCryptoMaterialsCache(capacity=CACHE_CAPACITY),
        max_age=max_age_s,
        max_messages_encrypted=CACHE_MAX_MESSAGES,
    )


def _kms_session() -> botocore.session.Session:
    session = botocore.session.Session()
    # Short timeouts and two tries: a KMS brownout must end a decryption in seconds (it runs in
    # a thread of a small pool, and its job's visibility runs meanwhile), and the worker hands
    # the job back rather than wait on KMS. The SDK's defaults are 60 s and several retries.
    session.set_default_client_config(
        Config(
            connect_timeout=KMS_CONNECT_TIMEOUT_S,
            read_timeout=KMS_READ_TIMEOUT_S,
            retries={"total_max_attempts": 2, "mode": "standard"},
        )
    )
    return session


class _KmsAnswers(threading.local):
    """The error codes (``""`` for a success) of the Decrypt calls made by this thread's current
    decryption: the Encryption SDK swallows them and says only that no data key decrypted."""

    def __init__(self) -> None:
        self.codes: list[str] = []

    def record(self, http_response: Any = None, parsed: Any = None, **_: Any) -> None:
        error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
        code = str(error.get("Code") or "")
        status = getattr(http_response, "status_code", 200)
        if not code and status >= 300:
            code = f"HTTP{status}"
        self.codes.append(code)


class FieldEncryptor:
    """Encrypts secret fields for one KMS key (the producer's side). Thread-safe enough for one
    producer; make one per process and reuse it, so its data-key cache does its work."""

    def __init__(self, key_arn: str, *, max_age_s: float = CACHE_MAX_AGE_S) -> None:
        self.key_arn = key_arn
        self._client = _client()
        self._materials = _materials([key_arn], max_age_s)

    def encrypt(self, value: str, *, job_id: str, client_id: str | None, field: str) -> str:
        """The base64 Encryption SDK message carrying ``value`` for this job's ``field``."""
        envelope = json.dumps({"job_id": job_id, "value": value}, ensure_ascii=False)
        ciphertext, _header = self._client.encrypt(
            source=envelope.encode("utf-8", "surrogatepass"),
            materials_manager=self._materials,
            encryption_context=encryption_context(client_id, field),
            algorithm=ALGORITHM,
        )
        return base64.b64encode(ciphertext).decode("ascii")


class FieldDecryptor:
    """Decrypts secret fields encrypted under any of ``key_arns`` (the worker's side)."""

    def __init__(self, key_arns: Sequence[str], *, max_age_s: float = CACHE_MAX_AGE_S) -> None:
        if not key_arns:
            raise ValueError("at least one KMS key ARN is needed to decrypt")
        self._client = _client()
        self._answers = _KmsAnswers()
        session = _kms_session()
        session.register("after-call.kms.Decrypt", self._answers.record)
        self._materials = _materials(key_arns, max_age_s, session)

    def decrypt(self, encrypted: str, *, job_id: str, client_id: str | None, field: str) -> str:
        """The secret ``encrypted`` carries, checked to be this job's ``field``.

        Raise :class:`FieldUnreadable`, :class:`FieldKeyRefused` or :class:`FieldKeyUnreachable`;
        none of their messages holds a byte of the ciphertext or the plaintext.
        """
        try:
            ciphertext = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise FieldUnreadable(f"{field}: the encrypted value is not base64") from None
        self._answers.codes = []
        try:
            plaintext, header = self._client.decrypt(
                source=ciphertext, materials_manager=self._materials
            )
        except (BotoCoreError, ConnectionError, TimeoutError) as error:
            raise FieldKeyUnreachable(f"KMS unreachable: {type(error).__name__}") from None
        except (DecryptKeyError, ClientError):
            raise _classified(self._answers.codes, field) from None
        except (
            AWSEncryptionSDKClientError,
            InvalidTag,
            InvalidSignature,
            ValueError,
            TypeError,
            KeyError,
            IndexError,
            struct.error,
        ) as error:
            # Serialization and authentication failures: the message was altered or is not one.
            raise FieldUnreadable(
                f"{field}: the encrypted value does not decrypt ({type(error).__name__})"
            ) from None
        expected = encryption_context(client_id, field)
        context = header.encryption_context
        if any(context.get(key) != value for key, value in expected.items()):
            raise FieldUnreadable(f"{field}: encrypted for another client or field")
        try:
            envelope = json.loads(plaintext.decode("utf-8", "surrogatepass"))
        except ValueError:
            raise FieldUnreadable(f"{field}: the encrypted value is not an envelope") from None
        value = envelope.get("value") if isinstance(envelope, dict) else None
        if not isinstance(value, str) or envelope.get("job_id") != job_id:
            raise FieldUnreadable(f"{field}: encrypted for another job")
        return value


#: KMS answers that say the data key itself is not one this key made: the message is to blame.
_CIPHERTEXT_REFUSALS = {"InvalidCiphertextException", "IncorrectKeyException"}
#: KMS answers that say nothing about the message or the deployment: try again later.
_KMS_FAILURES = {"KMSInternalException", "ThrottlingException", "DependencyTimeoutException"}


def _classified(codes: Sequence[str], field: str) -> Exception:
    """Whose fault a failed decryption is, from the KMS answers it got (see :class:`_KmsAnswers`).

    No KMS call at all means none of the message's data keys is under a key the worker accepts
    (a producer's own raw key, or another account's KMS key): no key will ever open it, so the
    message is to blame, not the deployment. Only a refusal by KMS of a key the worker accepts
    (a permission, a disabled or deleted key) is the deployment's.
    """
    errors = [code for code in codes if code]
    if not codes:
        return FieldUnreadable(
            f"{field}: encrypted under no KMS key this worker accepts (FIELD_ENCRYPTION_KEY_ARNS)"
        )
    if any(code in _KMS_FAILURES or code.startswith("HTTP5") for code in errors):
        failure = next(c for c in errors if c in _KMS_FAILURES or c.startswith("HTTP5"))
        return FieldKeyUnreachable(f"KMS failed: {failure}")
    refusals = [code for code in errors if code not in _CIPHERTEXT_REFUSALS]
    if refusals:
        return FieldKeyRefused(f"KMS refused to decrypt the data key: {refusals[0]}")
    if errors:
        return FieldUnreadable(f"{field}: KMS refused the encrypted data key ({errors[0]})")
    # KMS answered, and the SDK still found the data key wrong (its length, its key id).
    return FieldUnreadable(f"{field}: the encrypted data key is not a valid one")


def plaintext_fields(job: Job) -> list[str]:
    """The job's secret fields sent in plaintext."""
    return [
        name
        for name in SECRET_FIELDS
        if getattr(job, name, None) is not None
        and not isinstance(getattr(job, name), EncryptedSecret)
    ]


def encrypted_fields(job: Job) -> list[str]:
    """The job's secret fields sent encrypted."""
    return [name for name in SECRET_FIELDS if isinstance(getattr(job, name, None), EncryptedSecret)]


def encrypt_job(job: Job, encryptor: FieldEncryptor) -> Job:
    """The job with each plaintext secret field encrypted; it must have its ``job_id``."""
    if job.job_id is None:
        raise ValueError("a job needs its job_id before its fields are encrypted")
    names = plaintext_fields(job)
    if not names:
        return job
    document = json.loads(encode_job(job))
    for name in names:
        document[name] = {
            "encrypted": encryptor.encrypt(
                document[name], job_id=job.job_id, client_id=job.client_id, field=name
            )
        }
    return JOB_ADAPTER.validate_python(document)


def decrypt_job(job: Job, decryptor: FieldDecryptor) -> Job:
    """The job with its encrypted fields decrypted.

    Raise :class:`FieldUnreadable` when a field does not decrypt for this job, or its plaintext is
    not a valid value of the field; :class:`FieldKeyRefused` or :class:`FieldKeyUnreachable` when
    KMS is to blame. Synchronous (the SDK is): run it in a thread.
    """
    names = encrypted_fields(job)
    if not names:
        return job
    if job.job_id is None:
        raise FieldUnreadable("job_id: required when a field is encrypted (it is bound to it)")
    document = json.loads(encode_job(job))
    for name in names:
        document[name] = decryptor.decrypt(
            document[name]["encrypted"], job_id=job.job_id, client_id=job.client_id, field=name
        )
    try:
        return JOB_ADAPTER.validate_python(document)
    except ValidationError as error:
        # Field paths and rules only, as for any job: the values are the secrets themselves.
        raise FieldUnreadable(f"decrypted {validation_reason(error)}") from None


def decrypts(job: Job, decryptor: FieldDecryptor) -> None:
    """Return if the job's encrypted fields decrypt now; raise as :func:`decrypt_job` does.

    For the breaker's recheck after a KMS refusal: the plaintexts are dropped here, in the thread
    that made them, and never reach the caller. Synchronous: run it in a thread.
    """
    decrypt_job(job, decryptor)


#: The job fields that never carry a secret: a rejected job's DLQ copy keeps these, and the
#: secret fields only in their encrypted form. Anything else (a misspelt ``passwd``) is dropped.
KNOWN_NOT_SECRET = frozenset(
    name for model in JOB_MODELS for name in model.model_fields if name not in SECRET_FIELDS
)


def dead_letter_body(body: str) -> str:
    """A rejected message's body fit to keep in the DLQ: nothing in it can be a plaintext secret.

    A JSON object with each key once keeps the fields known not to be secret and the secret
    fields that are encrypted exactly as the contract says (``{"encrypted": "..."}``); it is
    copied unchanged when that is all it holds. A body that cannot be read that way (not JSON,
    not an object, a key twice) has no part known not to be secret: only its size is kept. No
    digest of it either: a hash of a short body around a password is a guessing oracle; the
    copy's ``original_message_id`` attribute matches it to what the producer sent.
    """
    try:
        document, duplicates = parse_json_object(body)
    except (ValueError, RecursionError):
        document, duplicates = None, set()
    if not isinstance(document, dict) or duplicates:
        size = len(body.encode("utf-8", "surrogatepass"))
        return json.dumps({"unreadable_body": {"bytes": size, "kept": False}})
    kept = {
        key: value
        for key, value in document.items()
        if key in KNOWN_NOT_SECRET or (key in SECRET_FIELDS and _encrypted_form(value))
    }
    if len(kept) == len(document):
        return body
    # ASCII: escapes carry what SQS would refuse raw (lone surrogates).
    return json.dumps(kept, separators=(",", ":"))


def _encrypted_form(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"encrypted"}
        and isinstance(value["encrypted"], str)
    )
