"""The Cognito gateway: the only place that knows the Cognito API.

It turns a job into its Cognito call (two calls for an import), with the SecretHash of exactly the
username it sends, and turns the answer into a :class:`CognitoSuccess` or one of the
:mod:`worker.cognito.outcomes` errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    ParamValidationError,
)

from worker.cognito.outcomes import (
    ALREADY_CONFIRMED_MESSAGE,
    CREDENTIAL_ERRORS,
    CognitoError,
    CognitoSuccess,
    ConfigurationError,
    PermanentError,
    TransientError,
    UserPoolError,
    classify,
    per_job_code,
)
from worker.cognito.secret_hash import secret_hash
from worker.contract.jobs import (
    CodeDelivery,
    ConfirmForgotPasswordJob,
    ConfirmSignUpJob,
    EncryptedSecret,
    ForgotPasswordJob,
    ImportUserJob,
    InviteUserJob,
    Job,
    JobType,
    ResendConfirmationCodeJob,
    SignUpJob,
    plain_secret,
)
from worker.settings import AppClient
from worker.telemetry.logs import scrub

if TYPE_CHECKING:
    from types_aiobotocore_cognito_idp.client import CognitoIdentityProviderClient

_MAX_MESSAGE_CHARS = 500

# The Cognito operations each job type calls, in order (each draws on its own quota category).
OPERATIONS: dict[JobType, tuple[str, ...]] = {
    JobType.SIGN_UP: ("SignUp",),
    JobType.CONFIRM_SIGN_UP: ("ConfirmSignUp",),
    JobType.RESEND_CONFIRMATION_CODE: ("ResendConfirmationCode",),
    JobType.FORGOT_PASSWORD: ("ForgotPassword",),
    JobType.CONFIRM_FORGOT_PASSWORD: ("ConfirmForgotPassword",),
    JobType.IMPORT_USER: ("AdminCreateUser", "AdminSetUserPassword"),
    JobType.INVITE_USER: ("AdminCreateUser",),
}


def request_secrets(job: Job, app_client: AppClient) -> list[str]:
    """Every secret value a job's request carries: masked in logs and error texts."""
    values = []
    # An encrypted field is masked once decrypted: the processor masks its plaintext then.
    if isinstance(job, SignUpJob | ConfirmForgotPasswordJob | ImportUserJob) and not isinstance(
        job.password, EncryptedSecret
    ):
        values.append(plain_secret(job.password))
    if isinstance(job, ConfirmSignUpJob | ConfirmForgotPasswordJob) and not isinstance(
        job.confirmation_code, EncryptedSecret
    ):
        values.append(plain_secret(job.confirmation_code))
    if app_client.client_secret is not None:
        secret = app_client.client_secret.get_secret_value()
        values += [secret, secret_hash(job.username_sent, app_client.client_id, secret)]
    return values


class CognitoGateway:
    """Runs one job's Cognito call for a configured app client, in its user pool's Region."""

    def __init__(self, clients_by_region: Mapping[str, CognitoIdentityProviderClient]) -> None:
        self._clients = dict(clients_by_region)

    async def execute(
        self, job: Job, app_client: AppClient, job_id: str, operation: str | None = None
    ) -> CognitoSuccess:
        """Make one of the job's calls once (``operation``, by default its only one).

        Raise a :class:`CognitoError` subclass when it fails.
        """
        client = self._clients[app_client.region]
        try:
            if isinstance(job, ImportUserJob):
                return await _import_step(client, job, app_client, job_id, operation)
            if isinstance(job, InviteUserJob):
                return await _invite(client, job, app_client, job_id)
            request = _common_request(job, app_client, job_id)
            return await self._call(client, job, request)
        except ClientError as error:
            raise _translate(error, job, app_client) from None
        except ParamValidationError as error:
            raise PermanentError(
                "InvalidParameterException", _safe_message(str(error), job, app_client)
            ) from None
        except (BotoCoreError, aiohttp.ClientError, TimeoutError, OSError) as error:
            # Connection refused or reset, read or connect timeout: the call may or may not have
            # reached Cognito. The error names an endpoint at most, never a request value.
            message = _safe_message(str(error), job, app_client)
            # Only a connect timeout proves the request never left: aiobotocore reports a reset
            # after the request was sent as EndpointConnectionError too.
            ambiguous = not isinstance(error, ConnectTimeoutError)
            raise TransientError(type(error).__name__, message, ambiguous=ambiguous) from None

    async def status_if_created_since(
        self, app_client: AppClient, username: str, since: float
    ) -> tuple[str, str | None] | None:
        """The user's status and ``sub`` if it was created at or after ``since`` (epoch s), else
        None (an older user, or none at all).

        Asked only after a lost answer, when SignUp or AdminCreateUser then finds the user
        existing: a user created after the job was sent is the job's own, one created before is
        someone else's (AdminGetUser, in the UserRead quota; rare enough not to be paced).
        """
        client = self._clients[app_client.region]
        try:
            user: Any = await client.admin_get_user(
                UserPoolId=app_client.user_pool_id, Username=username
            )
        except ClientError as error:
            translated = _translate(error, None, app_client)
            if translated.code == "UserNotFoundException":
                return None
            raise translated from None
        except (BotoCoreError, aiohttp.ClientError, TimeoutError, OSError) as error:
            raise TransientError(type(error).__name__, "could not read the user") from None
        created = user.get("UserCreateDate")
        created_at = created.timestamp() if created is not None else 0.0
        # A second of slack: Cognito's clock and SQS's are not the same clock.
        if created_at < since - 1:
            return None
        attributes = {a["Name"]: a["Value"] for a in user.get("UserAttributes", [])}
        return str(user.get("UserStatus") or "UNKNOWN"), attributes.get("sub")

    async def probe(self, app_client: AppClient) -> None:
        """Check the client's configuration, its user pool's included, with calls that change
        nothing.

        ConfirmSignUp for a username that cannot exist: Cognito checks the client and the
        SecretHash before it looks for the user, so a configuration error surfaces as such and a
        sound client answers UserNotFoundException (or CodeMismatchException). ConfirmSignUp names
        no pool, so AdminGetUser of that username follows (the grant the task role holds for
        telling a job's own user from an older one): UserNotFoundException means the pool is
        there and readable, ResourceNotFoundException that it is not. Neither call can tell a
        pool that exists but is not the client's. Raise the :class:`ConfigurationError` if there
        is one (:class:`UserPoolError` for the pool), and the :class:`TransientError` when the
        probe proves nothing either way (Cognito unreachable, throttled, failing).
        """
        username = f"cognito-worker-probe-{uuid.uuid4().hex}"
        probe = ConfirmSignUpJob.model_validate(
            {
                "version": 1,
                "type": "confirm_sign_up",
                "username": username,
                "confirmation_code": "000000",
            }
        )
        try:
            await self.execute(probe, app_client, "configuration-probe")
        except (ConfigurationError, TransientError):
            raise
        except CognitoError:
            pass
        await self._probe_pool(app_client, username)

    async def _probe_pool(self, app_client: AppClient, username: str) -> None:
        """AdminGetUser of a user that cannot exist: the pool answers UserNotFoundException."""
        client = self._clients[app_client.region]
        try:
            await client.admin_get_user(UserPoolId=app_client.user_pool_id, Username=username)
        except ClientError as error:
            translated = _translate(error, None, app_client)
            if translated.code == "UserNotFoundException":
                return
            if (
                isinstance(translated, TransientError) or translated.code in CREDENTIAL_ERRORS
            ):  # the caller's, not the pool's
                raise translated from None
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (401, 403):
                # The caller refused, under a code of no Cognito's (moto answers IAM's denial as
                # a bare 403): the task role's permissions, not the pool.
                raise ConfigurationError("AccessDeniedException", translated.message) from None
            # The username is ours and valid: what is left to refuse is the pool id.
            raise UserPoolError(
                translated.code, f"user pool {app_client.user_pool_id}: {translated.message}"
            ) from None
        except (BotoCoreError, aiohttp.ClientError, TimeoutError, OSError) as error:
            raise TransientError(type(error).__name__, "could not reach the user pool") from None
        # A user by that name exists: not what a sound pool answers, but the pool is there.

    @staticmethod
    async def _call(
        client: CognitoIdentityProviderClient, job: Job, request: dict[str, Any]
    ) -> CognitoSuccess:
        if isinstance(job, SignUpJob):
            request["Password"] = plain_secret(job.password)
            request["UserAttributes"] = _attributes(job.user_attributes)
            if job.validation_data:
                request["ValidationData"] = _attributes(job.validation_data)
            answer: Any = await client.sign_up(**request)
            return CognitoSuccess(
                user_sub=answer.get("UserSub"),
                user_confirmed=answer.get("UserConfirmed"),
                code_delivery=_code_delivery(answer),
            )
        if isinstance(job, ConfirmSignUpJob):
            request["ConfirmationCode"] = plain_secret(job.confirmation_code)
            if job.force_alias_creation is not None:
                request["ForceAliasCreation"] = job.force_alias_creation
            try:
                await client.confirm_sign_up(**request)
            except ClientError as error:
                if _is_already_confirmed(error):
                    # Confirming a confirmed user is what an idempotent worker wanted anyway.
                    return CognitoSuccess(user_confirmed=True, detail="already_confirmed")
                raise
            return CognitoSuccess(user_confirmed=True)
        if isinstance(job, ResendConfirmationCodeJob):
            answer = await client.resend_confirmation_code(**request)
            return CognitoSuccess(code_delivery=_code_delivery(answer))
        if isinstance(job, ForgotPasswordJob):
            answer = await client.forgot_password(**request)
            return CognitoSuccess(code_delivery=_code_delivery(answer))
        if isinstance(job, ConfirmForgotPasswordJob):
            request["ConfirmationCode"] = plain_secret(job.confirmation_code)
            request["Password"] = plain_secret(job.password)
            await client.confirm_forgot_password(**request)
            return CognitoSuccess()
        raise AssertionError(f"no single call for {job.type}")  # imports go to _import_step


async def _import_step(
    client: CognitoIdentityProviderClient,
    job: ImportUserJob,
    app_client: AppClient,
    job_id: str,
    operation: str | None,
) -> CognitoSuccess:
    """One of an import's two calls: create the user silently, or make its password permanent."""
    if operation == "AdminSetUserPassword":
        await client.admin_set_user_password(
            UserPoolId=app_client.user_pool_id,
            Username=job.username,
            Password=plain_secret(job.password),
            Permanent=True,
        )
        return CognitoSuccess(user_confirmed=True)
    request: dict[str, Any] = {
        "UserPoolId": app_client.user_pool_id,
        "Username": job.username,
        "UserAttributes": _attributes(job.user_attributes),
        # Nothing is sent to the user: an import is not an invitation.
        "MessageAction": "SUPPRESS",
        "ClientMetadata": {**job.client_metadata, "job_id": job_id},
    }
    if job.validation_data:
        request["ValidationData"] = _attributes(job.validation_data)
    answer: Any = await client.admin_create_user(**request)
    attributes = {a["Name"]: a["Value"] for a in answer.get("User", {}).get("Attributes", [])}
    return CognitoSuccess(user_sub=attributes.get("sub"), user_confirmed=False)


async def _invite(
    client: CognitoIdentityProviderClient,
    job: InviteUserJob,
    app_client: AppClient,
    job_id: str,
) -> CognitoSuccess:
    """Create the user and have Cognito send the invitation (no MessageAction: the default)."""
    request: dict[str, Any] = {
        "UserPoolId": app_client.user_pool_id,
        "Username": job.username,
        "UserAttributes": _attributes(job.user_attributes),
        "DesiredDeliveryMediums": list(job.delivery_mediums),
        "ClientMetadata": {**job.client_metadata, "job_id": job_id},
    }
    if job.validation_data:
        request["ValidationData"] = _attributes(job.validation_data)
    answer: Any = await client.admin_create_user(**request)
    attributes = {a["Name"]: a["Value"] for a in answer.get("User", {}).get("Attributes", [])}
    return CognitoSuccess(user_sub=attributes.get("sub"), user_confirmed=False)


def _common_request(job: Job, app_client: AppClient, job_id: str) -> dict[str, Any]:
    username = job.username_sent
    request: dict[str, Any] = {
        "ClientId": app_client.client_id,
        "Username": username,
        # Triggers see which job caused the call; the producer's own keys come first.
        "ClientMetadata": {**job.client_metadata, "job_id": job_id},
    }
    if app_client.client_secret is not None:
        # Hash exactly the string sent as Username; a client without a secret gets no hash.
        request["SecretHash"] = secret_hash(
            username, app_client.client_id, app_client.client_secret.get_secret_value()
        )
    if job.user_context is not None:
        context = {}
        if job.user_context.ip_address is not None:
            context["IpAddress"] = job.user_context.ip_address
        if job.user_context.encoded_data is not None:
            context["EncodedData"] = job.user_context.encoded_data
        request["UserContextData"] = context
    return request


def _attributes(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"Name": name, "Value": value} for name, value in values.items()]


def _code_delivery(answer: Any) -> CodeDelivery | None:
    details = answer.get("CodeDeliveryDetails")
    if not details:
        return None
    return CodeDelivery(
        destination=details.get("Destination"),
        delivery_medium=details.get("DeliveryMedium"),
        attribute_name=details.get("AttributeName"),
    )


def _is_already_confirmed(error: ClientError) -> bool:
    details = error.response.get("Error", {})
    return details.get("Code") == "NotAuthorizedException" and ALREADY_CONFIRMED_MESSAGE in str(
        details.get("Message", "")
    )


def _translate(error: ClientError, job: Job | None, app_client: AppClient) -> CognitoError:
    details = error.response.get("Error", {})
    code = str(details.get("Code") or "UnknownError")
    message = _safe_message(str(details.get("Message") or ""), job, app_client)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    error_class = classify(code, message, status)
    translated = error_class(per_job_code(code, message), message)
    translated.http_status = status if isinstance(status, int) else None
    return translated


def _safe_message(message: str, job: Job | None, app_client: AppClient) -> str:
    """Cognito's (or an emulator's) text without any secret of the request, and not too long."""
    secrets = request_secrets(job, app_client) if job is not None else []
    return scrub(message, secrets)[:_MAX_MESSAGE_CHARS]
