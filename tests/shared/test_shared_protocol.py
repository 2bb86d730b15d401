"""The protocol package: key names, envelope checks, Redis options, log redaction."""

from __future__ import annotations

import json
import logging
import time

import pytest
import redis
from bellhop_shared.jsonrpc import (
    INVALID_REQUEST,
    PARSE_ERROR,
    RpcError,
    error_for_invalid,
    parse_envelope,
    parse_json,
)
from bellhop_shared.keys import Keys, is_valid_session_id, new_session_id
from bellhop_shared.logging import (
    JsonFormatter,
    KeyValueFormatter,
    LogThrottle,
    describe_error,
    redact,
)
from bellhop_shared.redis_client import connection_options


def test_keys_follow_the_documented_names() -> None:
    keys = Keys("bellhop:")
    assert keys.queue("abc") == "bellhop:session:abc:queue"
    assert keys.inflight("abc") == "bellhop:session:abc:inflight"
    assert keys.results("abc") == "bellhop:session:abc:results"
    assert keys.worker("abc") == "bellhop:session:abc:worker"
    assert keys.client("abc") == "bellhop:session:abc:client"
    assert keys.sessions == "bellhop:sessions"


def test_session_ids_are_long_and_distinct() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_valid_session_id(session_id) for session_id in ids)
    assert all(len(session_id) >= 43 for session_id in ids)
    assert not is_valid_session_id("short")
    assert not is_valid_session_id(new_session_id() + "\n")
    assert not is_valid_session_id("../../etc/passwd-and-more-characters")


def test_parse_json_rejects_text() -> None:
    with pytest.raises(RpcError) as caught:
        parse_json("{not json")
    assert caught.value.code == PARSE_ERROR


@pytest.mark.parametrize(
    ("message", "expected_id"),
    [
        ([1, 2], None),
        ({"jsonrpc": "1.0", "method": "ping", "id": 4}, 4),
        ({"jsonrpc": "2.0", "method": "ping", "id": True}, None),
        ({"jsonrpc": "2.0", "method": "", "id": "a"}, "a"),
        ({"jsonrpc": "2.0", "method": "ping", "id": 5, "params": 3}, 5),
    ],
)
def test_invalid_envelopes_keep_a_readable_id(
    message: object, expected_id: object
) -> None:
    with pytest.raises(RpcError) as caught:
        parse_envelope(message)
    response = error_for_invalid(caught.value)
    assert response["error"]["code"] == INVALID_REQUEST
    assert response["id"] == expected_id


def test_envelope_marks_notifications() -> None:
    request = parse_envelope({"jsonrpc": "2.0", "method": "ping", "id": None})
    notice = parse_envelope({"jsonrpc": "2.0", "method": "ping"})
    assert request.is_notification is False
    assert notice.is_notification is True


def test_rediss_certificate_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "ssl_cert_reqs" not in connection_options("redis://127.0.0.1:6379/0")
    monkeypatch.setenv("REDIS_SSL_CERT_REQS", "none")
    assert connection_options("rediss://h:1/0")["ssl_cert_reqs"] is None
    monkeypatch.setenv("REDIS_SSL_CERT_REQS", "sometimes")
    with pytest.raises(ValueError, match="REDIS_SSL_CERT_REQS"):
        connection_options("rediss://h:1/0")


def test_describe_error_keeps_redis_message() -> None:
    error = redis.exceptions.ConnectionError("no reply from Redis within 30 s")

    assert describe_error(error) == "ConnectionError: no reply from Redis within 30 s"
    assert describe_error(TimeoutError()) == "TimeoutError"


def test_log_throttle_counts_held_back_lines() -> None:
    throttle = LogThrottle(interval_s=0.2)

    first = throttle.allow()
    within_interval = [throttle.allow() for _ in range(5)]
    time.sleep(0.25)
    after_interval = throttle.allow()

    assert first == 0
    assert within_interval == [None] * 5
    assert after_interval == 5


def test_log_throttle_end_reports_and_resets() -> None:
    throttle = LogThrottle(interval_s=60.0)
    throttle.allow()
    throttle.allow()

    assert throttle.is_active
    assert throttle.end() == 1
    assert not throttle.is_active
    assert throttle.allow() == 0


def test_redact_masks_credentials() -> None:
    line = (
        "connect redis://:hunter2@127.0.0.1:6379/0 "
        "Authorization: Bearer abc.def.ghi token=s3cret"
    )
    masked = redact(line)
    assert "hunter2" not in masked
    assert "abc.def.ghi" not in masked
    assert "s3cret" not in masked
    assert "redis://:***@127.0.0.1:6379/0" in masked


def test_formatters_redact_and_carry_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "bellhop.test",
            "levelname": "INFO",
            "levelno": logging.INFO,
            "msg": "using %s",
            "args": ("postgresql://app:pw123@db/test",),
            "session": "s-1",
            "color_message": "using \x1b[1m%s\x1b[0m",
        }
    )
    kv_line = KeyValueFormatter().format(record)
    json_line = json.loads(JsonFormatter().format(record))
    assert "pw123" not in kv_line
    assert "session=s-1" in kv_line
    assert "pw123" not in json_line["message"]
    assert json_line["session"] == "s-1"
    assert "color_message" not in kv_line
    assert "color_message" not in json_line
