"""The gateway's pure parts: message preparation, acks, packets, auth and settings."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from bellhop_gateway import calls, orchestrator, sio_json
from bellhop_gateway.auth import read_connect_request
from bellhop_gateway.rpc import (
    IdRewriter,
    build_ack,
    decode_payload,
    error_ack,
    prepare,
)
from bellhop_gateway.settings import GatewaySettings
from bellhop_gateway.sio_json import JsonPacket
from bellhop_shared.jsonrpc import RpcError
from pydantic import ValidationError
from socketio import packet
from socketio.exceptions import ConnectionRefusedError

SECRET = "unit-test-secret-that-is-long-enough"


def test_prepare_rewrites_each_request_id() -> None:
    prepared = prepare(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "a"},
            {"jsonrpc": "2.0", "id": 1, "method": "b"},
            {"jsonrpc": "2.0", "method": "note"},
        ],
        IdRewriter("g-unit"),
    )

    assert [request.get("id") for request in prepared.queued] == [
        "g-unit:1",
        "g-unit:2",
        None,
    ]
    assert prepared.expected_ids == ["g-unit:1", "g-unit:2"]
    assert [slot.original_id for slot in prepared.slots] == [1, 1, None]
    assert prepared.cost == 3


def test_build_ack_restores_order_and_ids() -> None:
    prepared = prepare(
        [
            {"jsonrpc": "2.0", "id": "x", "method": "a"},
            {"jsonrpc": "2.0", "method": "note"},
            {"id": 9},
            {"jsonrpc": "2.0", "id": "y", "method": "b"},
        ],
        IdRewriter("g"),
    )
    responses = {
        "g:2": {"jsonrpc": "2.0", "id": "g:2", "result": "B"},
        "g:1": {"jsonrpc": "2.0", "id": "g:1", "result": "A"},
    }

    ack = build_ack(prepared, responses)

    assert [entry["id"] for entry in ack] == ["x", 9, "y"]
    assert ack[0]["result"] == "A"
    assert ack[1]["error"]["code"] == -32600
    assert ack[2]["result"] == "B"


def test_build_ack_marks_missing_batch_entry() -> None:
    prepared = prepare(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "a"},
            {"jsonrpc": "2.0", "id": 2, "method": "b"},
        ],
        IdRewriter("g"),
    )

    ack = build_ack(prepared, {"g:1": {"jsonrpc": "2.0", "id": "g:1", "result": 1}})

    assert ack[0]["result"] == 1
    assert ack[1]["id"] == 2
    assert ack[1]["error"]["code"] == -32603


def test_error_ack_for_notifications_has_null_id() -> None:
    prepared = prepare({"jsonrpc": "2.0", "method": "note"}, IdRewriter("g"))

    ack = error_ack(prepared, -32001, "Rate limited.")

    assert ack == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32001, "message": "Rate limited."},
    }


def test_single_request_ack_is_object() -> None:
    prepared = prepare({"jsonrpc": "2.0", "id": 5, "method": "a"}, IdRewriter("g"))

    ack = error_ack(prepared, -32000, "Timed out.")

    assert ack["id"] == 5
    assert prepared.item_text() == '{"jsonrpc":"2.0","id":"g:1","method":"a"}'


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("x" * 101, -32003),
        ({"blob": "y" * 100}, -32003),
        ("{not json", -32700),
        ("", -32700),
    ],
)
def test_decode_payload_errors(payload: Any, code: int) -> None:
    with pytest.raises(RpcError) as raised:
        decode_payload(payload, max_bytes=100)

    assert raised.value.code == code


def test_decode_payload_counts_utf8_bytes() -> None:
    with pytest.raises(RpcError):
        decode_payload('"' + "é" * 50 + '"', max_bytes=100)
    assert decode_payload('"' + "e" * 50 + '"', max_bytes=100) == "e" * 50


def test_empty_batch_is_invalid() -> None:
    with pytest.raises(RpcError) as raised:
        prepare([], IdRewriter("g"))

    assert raised.value.code == -32600


def rejection_code(auth: Any, secret: str | None) -> str:
    with pytest.raises(ConnectionRefusedError) as raised:
        read_connect_request(auth, secret)
    code: str = raised.value.error_args["data"]["code"]
    return code


def test_connect_request_defaults_to_flights() -> None:
    request = read_connect_request(None, None)

    assert request.dataset == "flights"
    assert request.user is None
    assert not request.is_resume


def test_connect_request_reads_resume() -> None:
    request = read_connect_request({"session": "s" * 43, "resume": "token"}, None)

    assert request.is_resume
    assert request.session_id == "s" * 43
    assert request.resume_token == "token"


@pytest.mark.parametrize(
    "auth",
    [
        ["dataset"],
        {"dataset": 5},
        {"session": "s" * 43},
        {"resume": "token"},
        {"dataset": ""},
    ],
)
def test_connect_request_rejects_malformed_auth(auth: Any) -> None:
    assert rejection_code(auth, None) == "invalid_auth"


def test_connect_request_rejects_malformed_session_id() -> None:
    assert (
        rejection_code({"session": "../x", "resume": "t"}, None) == "session_not_found"
    )


def test_connect_request_reads_token_subject() -> None:
    token = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, SECRET, "HS256")

    request = read_connect_request({"token": token}, SECRET)

    assert request.user == "bob"


def test_token_signed_with_none_rejected() -> None:
    token = jwt.encode({"sub": "bob"}, None, algorithm="none")

    assert rejection_code({"token": token}, SECRET) == "invalid_token"


def test_settings_reject_short_secret() -> None:
    with pytest.raises(ValidationError) as raised:
        GatewaySettings(gateway_secret="short")

    assert "32 bytes" in str(raised.value)


@pytest.mark.parametrize(
    ("message_bytes", "frame_bytes"),
    [(262_144, 1_048_576), (4096, 69_632), (1_000_000, 4_000_000)],
)
def test_settings_frame_limit_leaves_room(message_bytes: int, frame_bytes: int) -> None:
    settings = GatewaySettings(gateway_max_message_bytes=message_bytes)

    assert settings.engine_max_bytes == frame_bytes


def test_settings_empty_secret_means_anonymous() -> None:
    assert GatewaySettings(gateway_secret="").gateway_secret is None


def test_settings_reject_heartbeat_not_below_ttl() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(gateway_client_ttl_s=5, gateway_client_heartbeat_s=5)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("", None),
        ("*", "*"),
        (
            "https://a.example, https://b.example",
            ["https://a.example", "https://b.example"],
        ),
    ],
)
def test_settings_cors_origins(raw: str, parsed: Any) -> None:
    assert GatewaySettings(gateway_cors_origins=raw).cors_origins == parsed


@pytest.mark.parametrize(
    ("packet_type", "data", "namespace", "packet_id"),
    [
        (packet.ACK, [{"jsonrpc": "2.0", "id": 7, "result": {"count": 3}}], None, 12),
        (packet.EVENT, ["session", {"state": "ready", "progress": 1.0}], "/", None),
        (packet.EVENT, ["session", {"message": "é ✓"}], "/admin", 4),
        (packet.ACK, [None], None, 1),
        (packet.ACK, [{"big": 2**70}], None, 2),
    ],
)
def test_json_packet_encodes_like_python_socketio(
    packet_type: int, data: Any, namespace: str | None, packet_id: int | None
) -> None:
    fast = JsonPacket(packet_type, data=data, namespace=namespace, id=packet_id)
    plain = packet.Packet(packet_type, data=data, namespace=namespace, id=packet_id)
    plain.json = sio_json

    encoded = fast.encode()

    assert encoded == plain.encode()
    decoded = packet.Packet(encoded_packet=encoded)
    assert (decoded.packet_type, decoded.id, decoded.data) == (
        packet_type,
        packet_id,
        data,
    )


def test_json_packet_sends_bytes_as_attachments() -> None:
    fast = JsonPacket(packet.EVENT, data=["blob", {"raw": b"\x00\x01"}])

    encoded = fast.encode()

    assert fast.packet_type == packet.BINARY_EVENT
    assert encoded == ['51-["blob",{"raw":{"_placeholder":true,"num":0}}]', b"\x00\x01"]


def test_queued_text_keeps_non_finite_numbers() -> None:
    raw = '{"jsonrpc":"2.0","id":1,"method":"filter","params":{"range":{"x":[NaN,1]}}}'
    message = sio_json.loads(raw)

    text = prepare(message, IdRewriter("g-unit")).item_text()

    assert '"range":{"x":[NaN,1]}' in text


@pytest.mark.parametrize(
    "text",
    [
        '{"id":1180591620717411303424}',
        b'{"id":-18446744073709551616}',
        '{"id":-9223372036854775809}',
    ],
)
def test_sio_json_keeps_wide_integers(text: str | bytes) -> None:
    decoded = sio_json.loads(text)

    assert isinstance(decoded["id"], int)
    assert str(decoded["id"]) in str(text)


def test_sio_json_wide_id_returns_as_sent() -> None:
    message = sio_json.loads(
        '{"jsonrpc":"2.0","id":1180591620717411303424,"method":"ping"}'
    )
    prepared = prepare(message, IdRewriter("g-unit"))
    rewritten = prepared.slots[0].rewritten_id
    assert rewritten is not None

    ack = build_ack(
        prepared, {rewritten: {"jsonrpc": "2.0", "id": rewritten, "result": 1}}
    )
    encoded = JsonPacket(packet.ACK, data=[ack], id=1).encode()

    assert '"id":1180591620717411303424' in encoded


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"id": 7}, 7),
        ({"id": "a"}, "a"),
        ({"id": 1.5}, 1.5),
        ({"id": True}, None),
        ({"id": [1]}, None),
        ([{"id": 7}], None),
        ('{"id": 7}', None),
    ],
)
def test_whole_rejection_echoes_single_id(payload: Any, expected: Any) -> None:
    assert calls._request_id(payload) == expected


def test_over_capacity_message_says_retry_once() -> None:
    detail = "The orchestrator already runs 50 workers (MAX_WORKERS); retry in 30 s."
    response = httpx.Response(
        503, json={"detail": detail}, headers={"Retry-After": "30"}
    )

    error = orchestrator._error_for(response, "flights")

    assert error.code == "over_capacity"
    assert error.public == f"No worker is available right now: {detail}"
