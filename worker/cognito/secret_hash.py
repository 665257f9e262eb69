"""The Cognito SecretHash, and nothing else."""

import base64
import hashlib
import hmac


def secret_hash(username: str, client_id: str, client_secret: str) -> str:
    """Return Base64(HMAC-SHA256(key=client_secret, message=username + client_id)).

    Key and message are UTF-8. ``username`` must be exactly the string sent as ``Username`` in the
    same request: Cognito hashes what it receives, so normalising one side breaks the match.
    """
    digest = hmac.new(
        client_secret.encode("utf-8"),
        (username + client_id).encode("utf-8"),
        hashlib.sha256,
    ).digest()
    return base64.b64encode(digest).decode("ascii")
