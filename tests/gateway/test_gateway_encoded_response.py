"""Worker responses that the gateway relays without decoding them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bellhop_gateway.rpc import EncodedResponse, IdRewriter, build_ack, prepare
from bellhop_gateway.sio_json import JsonPacket
from bellhop_shared.jsonrpc import error_response
from bellhop_worker.dispatch import encode
from socketio import packet

RESULT = {"count": 3, "ids": [1, 2, 3], "facets": {"carrier": {"UA": 2, "é": 1}}}


def _ack_text(ack: Any) -> Any:
    """Return the acknowledgement as the client decodes it."""
    encoded = JsonPacket(packet.ACK, data=[ack], id=5).encode()
    assert encoded.startswith("35")
    return json.loads(encoded[2:])[0]


@pytest.mark.parametrize(
    "response",
    [
        {"jsonrpc": "2.0", "id": "g-1:7", "result": RESULT},
        {"jsonrpc": "2.0", "id": "g-1:7", "result": None},
        error_response("g-1:7", -32602, 'Invalid "where"', {"param": "where"}),
    ],
)
def test_worker_encoding_splits(response: dict[str, Any]) -> None:
    encoded = EncodedResponse.split(encode(response))

    assert encoded is not None
    assert encoded.request_id == "g-1:7"


@pytest.mark.parametrize("client_id", [7, 'a"b\\c', 2**70, -(2**70), 1.5, None])
def test_with_id_restores_client_id(client_id: Any) -> None:
    response = {"jsonrpc": "2.0", "id": "g-1:7", "result": RESULT}
    encoded = EncodedResponse.split(encode(response))
    assert encoded is not None

    decoded = _ack_text(encoded.with_id(client_id))

    assert decoded == {**response, "id": client_id}


@pytest.mark.parametrize(
    "text",
    [
        b'[{"jsonrpc":"2.0","id":"g:1","result":1}]',
        b'{"jsonrpc":"2.0","method":"session.progress","params":{}}',
        b'{"jsonrpc":"2.0","id":7,"result":1}',
        b'{"jsonrpc": "2.0", "id": "g:1", "result": 1}',
        b'{"jsonrpc":"2.0","id":"g\\"1","result":1}',
        b'{"jsonrpc":"2.0","id":"g:1"}',
        b'{"jsonrpc":"2.0","id":"g:1","result":[1,2',
        b'{"jsonrpc":"2.0","id":"g:1',
    ],
)
def test_split_leaves_other_texts_to_decoding(text: bytes) -> None:
    assert EncodedResponse.split(text) is None


def test_batch_ack_mixes_encoded_and_decoded() -> None:
    message = [
        {"jsonrpc": "2.0", "id": "first", "method": "ping"},
        {"jsonrpc": "2.0", "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "ping"},
    ]
    prepared = prepare(message, IdRewriter("g-unit"))
    first, _, second = (slot.rewritten_id for slot in prepared.slots)
    assert first is not None
    assert second is not None
    encoded = EncodedResponse.split(
        encode({"jsonrpc": "2.0", "id": first, "result": "pong"})
    )
    assert encoded is not None
    responses = {
        first: encoded,
        second: {"jsonrpc": "2.0", "id": second, "result": "pong"},
    }

    decoded = _ack_text(build_ack(prepared, responses))

    assert decoded == [
        {"jsonrpc": "2.0", "id": "first", "result": "pong"},
        {"jsonrpc": "2.0", "id": 2, "result": "pong"},
    ]
