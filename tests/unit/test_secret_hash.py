"""SecretHash against vectors computed independently of this code.

The vectors were computed with Node.js (on this machine), not with Python:

    node -e "console.log(require('crypto').createHmac('sha256', SECRET)
                         .update(USERNAME + CLIENT_ID, 'utf8').digest('base64'))"
"""

import pytest

from worker.cognito.secret_hash import secret_hash

NODE_VECTORS = [
    # (username, client id, client secret, hash from Node's crypto.createHmac)
    ("alice", "1example23456789", "example-client-secret",
     "HP0HWmKpUgoAE6CfY7Yv47vDEVFNCHWK5QpFQ9anleA="),
    ("-alice", "1example23456789", "example-client-secret",
     "ISnUxL6q4gV7goTJ5JATK01DZOrKSTWrCoHYtodHn9o="),
    ("jöhn.dœ@exämple.com", "7abcdefghijklmnopqrstuvwx", "s3cr3t/with+symbols==",
     "HnC/CRxG4R0PIJMWoqdgDxFFSNAEFDgTEJypMpMXpwo="),
    ("用户名", "7abcdefghijklmnopqrstuvwx", "another-secret-value",
     "L1yJWC/lNf5D6PCb3u5hlVUUyRU6V39VV9kBQmn1ZaU="),
    ("😀emoji", "4lkjhgfdsa", "emoji-secret", "3kK8JmpKJXhDMjfCiTcqLwdum27zo7Z6LqLkpdA4aEk="),
]  # fmt: skip


@pytest.mark.parametrize(("username", "client_id", "secret", "expected"), NODE_VECTORS)
def test_matches_node_crypto(username: str, client_id: str, secret: str, expected: str) -> None:
    assert secret_hash(username, client_id, secret) == expected


def test_hashes_the_username_exactly_as_given() -> None:
    # Cognito hashes the Username it receives: case and aliases are not normalised.
    assert secret_hash("Alice", "1example23456789", "example-client-secret") != NODE_VECTORS[0][3]
