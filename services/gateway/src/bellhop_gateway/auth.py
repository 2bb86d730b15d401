"""Connection authentication: read the Socket.IO `auth` object, verify the JWT.

A client sends `{"dataset": name}` for a new session or `{"session": id,
"resume": token}` to re-attach, plus `"token"` (an HS256 JWT whose `sub` is
the user id) when the gateway has a secret. Every rejection raises
socketio's ConnectionRefusedError with a message and `{"message", "code"}`,
which the client receives in its connect_error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from bellhop_shared.catalog import DEFAULT_DATASET
from bellhop_shared.keys import is_valid_session_id
from socketio.exceptions import ConnectionRefusedError

JWT_ALGORITHMS = ["HS256"]


@dataclass(frozen=True)
class ConnectRequest:
    """The session a client requests when it connects."""

    dataset: str
    user: str | None
    session_id: str | None = None
    resume_token: str | None = None

    @property
    def is_resume(self) -> bool:
        return self.session_id is not None


def reject(code: str, message: str) -> ConnectionRefusedError:
    """Build the exception that refuses a connection with a reason for the client.

    The client's connect_error receives {"message": message, "data": {"message":
    message, "code": code}}; the JavaScript client exposes them as err.message
    and err.data.
    """
    return ConnectionRefusedError(message, {"message": message, "code": code})


def _string_field(auth: dict[str, Any], name: str) -> str | None:
    value = auth.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise reject("invalid_auth", f'auth field "{name}" must be a non-empty string.')
    return value


def verify_token(token: str | None, secret: str) -> str:
    """Return the user id (`sub`) of a valid token; reject anything else."""
    if token is None:
        raise reject(
            "token_required",
            'This gateway requires a signed token: connect with auth {"token": ...}.',
        )
    try:
        claims = jwt.decode(
            token, secret, algorithms=JWT_ALGORITHMS, options={"require": ["sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise reject("token_expired", "The token has expired; get a new one.") from None
    except jwt.InvalidTokenError as exc:
        raise reject("invalid_token", f"The token is invalid: {exc}.") from None
    return str(claims["sub"])


def read_connect_request(auth: Any, secret: str | None) -> ConnectRequest:
    """Validate a connection's auth object and return the request it makes."""
    if auth is None:
        auth = {}
    if not isinstance(auth, dict):
        raise reject("invalid_auth", 'auth must be an object such as {"dataset": ...}.')
    token = _string_field(auth, "token")
    user = verify_token(token, secret) if secret is not None else None
    session_id = _string_field(auth, "session")
    resume_token = _string_field(auth, "resume")
    if session_id is None and resume_token is None:
        dataset = _string_field(auth, "dataset") or DEFAULT_DATASET
        return ConnectRequest(dataset=dataset, user=user)
    if session_id is None or resume_token is None:
        raise reject(
            "invalid_auth", 'A resume needs both "session" and "resume" in auth.'
        )
    if not is_valid_session_id(session_id):
        raise reject("session_not_found", "No such session; start a new one.")
    return ConnectRequest(
        dataset="", user=user, session_id=session_id, resume_token=resume_token
    )
