"""JSON for python-socketio, encoded and decoded with orjson.

`dumps` and `loads` form the `json` module python-socketio and
python-engineio accept: they call `dumps(data, separators=(",", ":"))`, expect
a str back, and call `loads` with str or bytes. orjson writes compact JSON
already and returns bytes, so `dumps` decodes its output. Values that orjson
rejects fall back to the standard library: integers wider than 64 bits when
encoding, NaN and Infinity literals when decoding. Text with a run of 19 or
more digits is decoded by the standard library too, because orjson turns an
integer outside -2**63 to 2**64 - 1 into a float, and a client's request id
must come back as sent. One difference remains: orjson writes NaN and
infinities as null, where the standard library writes invalid JSON.

`JsonPacket` is the packet class the gateway's server uses. Before encoding
an outgoing packet, python-socketio walks its whole payload in Python to look
for bytes, which for a filter result with every facet counted cost more than
the encoding itself. orjson refuses bytes, so a payload that encodes has none:
the packet encodes once, up front, and keeps the text.

An incoming event nested too deeply for the parsers would make python-socketio
drop the packet, and a call waiting for its acknowledgement would never get
one. `JsonPacket` decodes such an event as `[name, NESTED_TOO_DEEPLY]`
instead, so the event's handler can return a parse error.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import orjson
from socketio import packet

_OPTIONS = orjson.OPT_NON_STR_KEYS
# The event name opens the packet's JSON array; the header before it holds
# only the packet type, the namespace and the ack id.
_EVENT_NAME = re.compile(r'\[\s*"((?:[^"\\]|\\.){1,200})"')


# 19 digits can fall below -2**63 and 20 can exceed 2**64 - 1, the range of
# integers orjson decodes exactly.
_LONG_NUMBER = re.compile(r"\d{19}")
_LONG_NUMBER_BYTES = re.compile(rb"\d{19}")


class NestedTooDeeply:
    """The payload of an event that JSON parsers could not decode for depth."""

    def __repr__(self) -> str:
        return "NESTED_TOO_DEEPLY"


NESTED_TOO_DEEPLY = NestedTooDeeply()


def dumps(data: Any, **kwargs: Any) -> str:
    """Encode data as compact JSON text; keyword arguments are for the fallback."""
    try:
        return orjson.dumps(data, option=_OPTIONS).decode()
    except TypeError:
        kwargs.setdefault("separators", (",", ":"))
        return json.dumps(data, **kwargs)


def loads(text: str | bytes | bytearray, **kwargs: Any) -> Any:
    pattern = _LONG_NUMBER if isinstance(text, str) else _LONG_NUMBER_BYTES
    if pattern.search(text):
        return json.loads(text, **kwargs)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # Raises the standard library's error when the text is invalid JSON.
        return json.loads(text, **kwargs)


class JsonPacket(packet.Packet):
    """A Socket.IO packet whose JSON payload is encoded once, when it is built.

    A payload orjson cannot encode (bytes among them) takes python-socketio's
    own path, binary attachments included.
    """

    json = sys.modules[__name__]

    def __init__(
        self,
        packet_type: int = packet.EVENT,
        data: Any = None,
        namespace: str | None = None,
        id: int | None = None,  # noqa: A002 - the base class's name
        binary: bool | None = None,
        encoded_packet: Any = None,
    ) -> None:
        self._text: str | None = None
        if binary is None and data is not None and encoded_packet is None:
            try:
                self._text = orjson.dumps(data, option=_OPTIONS).decode()
            except TypeError:
                pass
            else:
                binary = False
        super().__init__(packet_type, data, namespace, id, binary, encoded_packet)

    def decode(self, encoded_packet: Any) -> int:
        try:
            return int(super().decode(encoded_packet))
        except RecursionError:
            # The header (type, namespace, id) was read before the payload.
            name = _EVENT_NAME.search(encoded_packet or "")
            if self.packet_type != packet.EVENT or name is None:
                raise
            self.data = [name.group(1), NESTED_TOO_DEEPLY]
            return 0

    def encode(self) -> Any:
        if self._text is None or self.packet_type not in (packet.EVENT, packet.ACK):
            return super().encode()
        head = str(self.packet_type)
        if self.namespace is not None and self.namespace != "/":
            head += self.namespace + ","
        if self.id is not None:
            head += str(self.id)
        return head + self._text
