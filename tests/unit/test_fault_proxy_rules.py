"""The fault proxy's pure parts: how it names a call, and its sliding quota window."""

import pytest
from multidict import CIMultiDict

from tests.support.fault_proxy import Quota, identify

# --------------------------------------------------------------------------- identification


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        (
            {
                "Authorization": "AWS4-HMAC-SHA256 Credential=local/20250101/us-east-1/sqs/"
                "aws4_request, SignedHeaders=host, Signature=abc",
                "X-Amz-Target": "AmazonSQS.ReceiveMessage",
            },
            b"{}",
            ("sqs", "ReceiveMessage", None),
        ),
        (
            {
                "X-Amz-Target": "AWSCognitoIdentityProviderService.SignUp",
                "Content-Type": "application/x-amz-json-1.1",
            },
            b'{"ClientId": "c", "Username": "alice"}',
            ("cognito-idp", "SignUp", "alice"),
        ),
        (
            {
                "Authorization": "AWS4-HMAC-SHA256 Credential=local/20250101/us-east-1/sns/"
                "aws4_request, SignedHeaders=host, Signature=abc",
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            },
            b"Action=Publish&Version=2010-03-31&TopicArn=arn",
            ("sns", "Publish", None),
        ),
        (
            {"X-Amz-Target": "DynamoDB_20120810.PutItem"},
            b'{"TableName": "t"}',
            ("dynamodb", "PutItem", None),
        ),
    ],
)
def test_identify(
    headers: dict[str, str], body: bytes, expected: tuple[str, str, str | None]
) -> None:
    call = identify(CIMultiDict(headers), {}, body)
    assert (call.service, call.operation, call.username) == expected


def test_quota_window_slides() -> None:
    quota = Quota("signups", frozenset({"SignUp"}), rps=2)
    assert [quota.admit(t) for t in (0.0, 0.1, 0.2, 0.9, 1.05, 1.2)] == [
        True,
        True,
        False,
        False,
        True,
        True,
    ]
    assert quota.throttled == 2
