"""JSON-RPC handling at the gateway: decode, validate, rewrite ids, build acks.

The gateway responds to malformed messages itself and queues only valid
requests.
Each queued request gets a fresh id unique across replicas
("<gateway_id>:<n>"), so a worker response can be routed to the call that is
waiting for it. The client's own id is restored in the acknowledgement.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from bellhop_shared.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MESSAGE_TOO_LARGE,
    RequestId,
    RpcError,
    error_for_invalid,
    error_response,
    nested_too_deeply_error,
    parse_envelope,
    parse_json,
)

from bellhop_gateway.sio_json import NESTED_TOO_DEEPLY, dumps


@dataclass
class Slot:
    """One request of a message, in the client's order.

    A slot contains the gateway's own error response, or the id a queued request
    was rewritten to (None for a queued notification, which gets no response).
    """

    original_id: RequestId
    error: dict[str, Any] | None = None
    rewritten_id: str | None = None
    is_notification: bool = False


@dataclass
class PreparedMessage:
    """A client message split into gateway errors and the requests to queue."""

    is_batch: bool
    slots: list[Slot] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cost(self) -> int:
        """Return the number of requests the item puts on the queue."""
        return len(self.queued)

    @property
    def expected_ids(self) -> list[str]:
        return [slot.rewritten_id for slot in self.slots if slot.rewritten_id]

    def item_text(self) -> str:
        """Return the JSON text to LPUSH: one request, or a batch array."""
        payload: Any = self.queued if self.is_batch else self.queued[0]
        text = dumps(payload)
        if "null" in text:
            # orjson writes NaN and infinities as null, which would turn an
            # invalid bound into an open one. json keeps them, so the worker
            # rejects them with a clear error.
            return json.dumps(payload, separators=(",", ":"))
        return text


@dataclass(frozen=True)
class EncodedResponse:
    """A worker response kept as JSON text: its id, and the text after the id."""

    # The worker encodes "jsonrpc" and "id" first, and the ids the gateway
    # issues ("<gateway_id>:<n>") contain nothing JSON escapes.
    HEAD = b'{"jsonrpc":"2.0","id":"'

    request_id: str
    tail: bytes

    @classmethod
    def split(cls, text: bytes) -> EncodedResponse | None:
        """Return the response with its id read off its head; None for other texts.

        None means the text must be decoded: a batch, a notification, a
        response whose id is not a plain string, or a text that does not
        end its object. The rest of the text is not checked, because it is
        the worker's own encoding and Redis delivers each message whole.
        """
        if not text.startswith(cls.HEAD) or not text.endswith(b"}"):
            return None
        end = text.find(b'"', len(cls.HEAD))
        if end < 0 or text[end + 1 : end + 2] != b",":
            return None
        request_id = text[len(cls.HEAD) : end]
        if b"\\" in request_id:
            return None
        return cls(request_id.decode(), text[end + 1 :])

    def with_id(self, request_id: RequestId) -> orjson.Fragment:
        """Return the response with request_id in place of the gateway's id.

        The Fragment goes into the acknowledgement as it is, without encoding.
        """
        head = b'{"jsonrpc":"2.0","id":' + dumps(request_id).encode()
        return orjson.Fragment(head + self.tail)


WorkerResponse = dict[str, Any] | EncodedResponse


class IdRewriter:
    """Issues request ids unique to this gateway replica."""

    def __init__(self, gateway_id: str) -> None:
        self._gateway_id = gateway_id
        self._counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._gateway_id}:{next(self._counter)}"


def message_size_bytes(payload: Any) -> int:
    if isinstance(payload, str):
        return len(payload.encode())
    return len(dumps(payload).encode())


def decode_payload(payload: Any, max_bytes: int) -> Any:
    """Return the decoded message; raise RpcError when too large or not JSON."""
    if payload is NESTED_TOO_DEEPLY:
        raise nested_too_deeply_error()
    try:
        size_bytes = message_size_bytes(payload)
    except RecursionError:
        # orjson decodes 1,024 levels but encodes only 255, and the standard
        # library's encoder then gives up at about 1,000.
        raise nested_too_deeply_error() from None
    if size_bytes > max_bytes:
        raise RpcError(
            MESSAGE_TOO_LARGE,
            f"Message too large: {size_bytes} bytes, the limit is {max_bytes} "
            "(GATEWAY_MAX_MESSAGE_BYTES); ask for less per request or split it.",
        )
    if isinstance(payload, str):
        return parse_json(payload)
    return payload


def _prepare_one(message: Any, new_id: Callable[[], str]) -> tuple[Slot, Any]:
    """Validate one request; return its slot and the rewritten request, if any."""
    try:
        envelope = parse_envelope(message)
    except RpcError as exc:
        invalid = error_for_invalid(exc)
        return Slot(original_id=invalid["id"], error=invalid), None
    if envelope.is_notification:
        return Slot(original_id=None, is_notification=True), message
    rewritten_id = new_id()
    slot = Slot(original_id=envelope.request_id, rewritten_id=rewritten_id)
    return slot, {**message, "id": rewritten_id}


def prepare(message: Any, new_id: Callable[[], str]) -> PreparedMessage:
    """Split a decoded message into gateway errors and requests to queue."""
    if isinstance(message, list) and not message:
        raise RpcError(INVALID_REQUEST, "Invalid request: the batch is empty.")
    is_batch = isinstance(message, list)
    prepared = PreparedMessage(is_batch=is_batch)
    for element in message if is_batch else [message]:
        slot, request = _prepare_one(element, new_id)
        prepared.slots.append(slot)
        if request is not None:
            prepared.queued.append(request)
    return prepared


def _restore_id(response: WorkerResponse, slot: Slot) -> Any:
    if isinstance(response, EncodedResponse):
        return response.with_id(slot.original_id)
    return {**response, "id": slot.original_id}


def _missing_response(slot: Slot) -> dict[str, Any]:
    return error_response(
        slot.original_id,
        INTERNAL_ERROR,
        "Internal error: the worker's batch response had no entry for this "
        "request; send it again.",
    )


def build_ack(prepared: PreparedMessage, responses: dict[str, WorkerResponse]) -> Any:
    """Return the acknowledgement: a response, a batch array, or None.

    `responses` maps rewritten ids to worker responses. Notifications get no
    entry, and a message that produces no entry at all is acknowledged with
    None, as JSON-RPC sends nothing back for it.
    """
    entries: list[dict[str, Any]] = []
    for slot in prepared.slots:
        if slot.error is not None:
            entries.append(slot.error)
        elif slot.rewritten_id is not None:
            response = responses.get(slot.rewritten_id)
            entries.append(
                _restore_id(response, slot) if response else _missing_response(slot)
            )
    if not entries:
        return None
    return entries if prepared.is_batch else entries[0]


def error_ack(
    prepared: PreparedMessage, code: int, message: str, data: Any = None
) -> Any:
    """Return the same error for every request of a message that was not queued.

    A message of notifications only gets one error with id null, so the client
    still learns that nothing was queued.
    """
    entries: list[dict[str, Any]] = []
    for slot in prepared.slots:
        if slot.error is not None:
            entries.append(slot.error)
        elif not slot.is_notification:
            entries.append(error_response(slot.original_id, code, message, data))
    if not prepared.expected_ids:
        entries.append(error_response(None, code, message, data))
    return entries if prepared.is_batch else entries[0]
