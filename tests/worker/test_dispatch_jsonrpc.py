"""JSON-RPC 2.0 dispatch: envelopes, batches, notifications and every error code.

These tests drive the dispatcher with a small in-test engine, so that each error
path (invalid params, an engine bug, a result JSON cannot encode) is triggered
on purpose. The runtime tests run the real engine on the real flights data.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import numpy as np
import pytest
from bellhop_shared.jsonrpc import InvalidParams
from bellhop_worker.dispatch import Dispatcher, encode
from bellhop_worker.methods import build_methods
from bellhop_worker.status import WorkerStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ERROR_CODES = {-32700, -32600, -32601, -32602, -32603}


class ToyEngine:
    """An engine over ten rows 0..9 whose `compute` ops exercise error paths."""

    def describe(self) -> dict[str, Any]:
        return {"dataset": "toy", "rows": 10}

    def filter(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = set(params) - {"where", "limit"}
        if unknown:
            raise InvalidParams(f"unknown filter params {sorted(unknown)}")
        limit = params.get("limit", 10)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise InvalidParams(f"limit must be an integer, got {limit!r}")
        return {"count": 10, "ids": list(range(10))[:limit]}

    def compute(self, params: dict[str, Any]) -> dict[str, Any]:
        op = params.get("op")
        if op == "nan":
            return {"mean": float("nan")}
        if op == "numpy":
            return {"sum": np.int64(45), "values": np.arange(3)}
        if op == "object":
            return {"value": object()}
        if op == "bug":
            raise ZeroDivisionError("division by zero in the toy engine")
        if op == "nan_bound":
            bound = params.get("bound")
            raise InvalidParams(f"Invalid bound {bound!r}", {"value": bound})
        raise InvalidParams(f"unknown op {op!r}")


@pytest.fixture
def status() -> WorkerStatus:
    return WorkerStatus("w-test0001", "session-test", "toy")


@pytest.fixture
def terminations() -> list[bool]:
    return []


@pytest.fixture
def dispatcher(status: WorkerStatus, terminations: list[bool]) -> Dispatcher:
    methods = build_methods(ToyEngine(), status, lambda: terminations.append(True))
    return Dispatcher(methods, on_request=status.count_request)


def request(method: str, request_id: Any = 1, **fields: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, **fields}


def answer(dispatcher: Dispatcher, message: Any) -> Any:
    """Send one message (raw text or bytes as is, anything else as JSON)."""
    raw = message if isinstance(message, str | bytes) else json.dumps(message)
    encoded = dispatcher.handle(raw)
    return None if encoded is None else json.loads(encoded)


def is_valid_response(response: Any) -> bool:
    """Return True when response is one JSON-RPC 2.0 response object."""
    if not isinstance(response, dict) or response.get("jsonrpc") != "2.0":
        return False
    if "id" not in response or ("result" in response) == ("error" in response):
        return False
    if "result" in response:
        return set(response) == {"jsonrpc", "id", "result"}
    error = response["error"]
    return (
        isinstance(error, dict)
        and error.get("code") in ERROR_CODES
        and isinstance(error.get("message"), str)
        and bool(error["message"])
    )


def test_dispatch_single_request_result(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("filter", 5, params={"limit": 2}))

    assert response == {
        "jsonrpc": "2.0",
        "id": 5,
        "result": {"count": 10, "ids": [0, 1]},
    }


def test_dispatch_echoes_string_id(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("describe", "g-1:abc"))

    assert response["id"] == "g-1:abc"
    assert response["result"] == {"dataset": "toy", "rows": 10}


def test_dispatch_notification_gets_no_response(dispatcher: Dispatcher) -> None:
    message = {"jsonrpc": "2.0", "method": "ping"}

    assert answer(dispatcher, message) is None


def test_dispatch_failing_notification_gets_no_response(dispatcher: Dispatcher) -> None:
    message = {"jsonrpc": "2.0", "method": "no_such_method"}

    assert answer(dispatcher, message) is None


def test_dispatch_not_json_is_parse_error(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, "{this is not json")

    assert response["error"]["code"] == -32700
    assert response["id"] is None


def test_dispatch_invalid_utf8_is_parse_error(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, b'{"jsonrpc": "2.0", "method": "\xff\xfe"}')

    assert response["error"]["code"] == -32700
    assert response["id"] is None


def test_dispatch_deep_nesting_is_parse_error(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, "[" * 100_000 + "]" * 100_000)

    assert response["error"]["code"] == -32700
    assert "1,000 levels deep" in response["error"]["message"]


@pytest.mark.parametrize("message", [42, "text", None, True, 1.5])
def test_dispatch_non_object_is_invalid_request(
    dispatcher: Dispatcher, message: Any
) -> None:
    response = answer(dispatcher, json.dumps(message))

    assert response["error"]["code"] == -32600
    assert response["id"] is None


def test_dispatch_wrong_version_is_invalid_request(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, {"jsonrpc": "1.0", "id": 3, "method": "ping"})

    assert response["error"]["code"] == -32600
    assert response["id"] == 3
    assert "2.0" in response["error"]["message"]


def test_dispatch_missing_method_is_invalid_request(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, {"jsonrpc": "2.0", "id": 4})

    assert response["error"]["code"] == -32600
    assert response["id"] == 4


@pytest.mark.parametrize("bad_id", [True, {"a": 1}, [1]])
def test_dispatch_bad_id_is_invalid_request(
    dispatcher: Dispatcher, bad_id: Any
) -> None:
    response = answer(dispatcher, request("ping", bad_id))

    assert response["error"]["code"] == -32600
    assert response["id"] is None


def test_dispatch_scalar_params_is_invalid_request(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("filter", 6, params="where"))

    assert response["error"]["code"] == -32600
    assert response["id"] == 6


def test_dispatch_null_params_is_invalid_request(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("ping", 6, params=None))

    assert response["error"]["code"] == -32600
    assert response["id"] == 6
    assert "got null; omit it" in response["error"]["message"]


def test_dispatch_unknown_method_lists_methods(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("explode", 7))

    assert response["error"]["code"] == -32601
    assert response["id"] == 7
    message = response["error"]["message"]
    assert "explode" in message
    for name in ("compute", "describe", "filter", "ping", "terminate"):
        assert name in message


def test_dispatch_long_method_name_is_shortened(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("x" * 10_000, 8))

    assert response["error"]["code"] == -32601
    assert len(response["error"]["message"]) < 500


def test_dispatch_positional_params_rejected(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("filter", 9, params=[{"limit": 1}]))

    assert response["error"]["code"] == -32602
    assert response["id"] == 9
    assert "object" in response["error"]["message"]


def test_dispatch_params_for_ping_rejected(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("ping", 10, params={"verbose": True}))

    assert response["error"]["code"] == -32602
    assert "verbose" in response["error"]["message"]


@pytest.mark.parametrize("params", [{}, []])
def test_dispatch_empty_params_for_ping_accepted(
    dispatcher: Dispatcher, params: Any
) -> None:
    response = answer(dispatcher, request("ping", 11, params=params))

    assert response["result"]["pong"] is True


def test_dispatch_empty_array_params_for_filter(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("filter", 13, params=[]))

    assert "result" in response, response
    assert response["id"] == 13


def test_dispatch_engine_invalid_params(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("filter", 12, params={"limit": "ten"}))

    assert response["error"]["code"] == -32602
    assert response["id"] == 12
    assert "'ten'" in response["error"]["message"]


def test_dispatch_engine_bug_is_internal_error(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="bellhop_worker.dispatch"):
        response = answer(dispatcher, request("compute", 13, params={"op": "bug"}))
    after = answer(dispatcher, request("ping", 14))

    assert response["error"]["code"] == -32603
    assert response["id"] == 13
    assert "ZeroDivisionError" in caplog.text
    assert after["result"]["pong"] is True


def test_dispatch_nan_result_is_internal_error(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("compute", 15, params={"op": "nan"}))

    assert response["error"]["code"] == -32603
    assert response["id"] == 15


def test_dispatch_error_with_nan_data_keeps_message(dispatcher: Dispatcher) -> None:
    params = {"op": "nan_bound", "bound": float("nan")}

    response = answer(dispatcher, request("compute", 17, params=params))

    assert response["id"] == 17
    assert response["error"]["code"] == -32602
    assert response["error"]["message"] == "Invalid bound nan"
    assert "data" not in response["error"]


def test_dispatch_unencodable_object_is_internal_error(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("compute", 16, params={"op": "object"}))

    assert response["error"]["code"] == -32603


def test_dispatch_numpy_values_encoded(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, request("compute", 17, params={"op": "numpy"}))

    assert response["result"] == {"sum": 45, "values": [0, 1, 2]}


@pytest.mark.parametrize(
    "result",
    [
        {"strided": np.arange(6)[::2], "flag": np.bool_(True)},
        {"big": 2**70, "keys": {1: "one", None: "none"}},
        {"text": "lone \ud800 surrogate", "missing": None},
        {"nested": [[1.5, None], {"null": "null"}]},
    ],
)
def test_encode_matches_json(result: dict[str, Any]) -> None:
    response = {"jsonrpc": "2.0", "id": 7, "result": result}

    encoded = encode(response)

    expected = json.dumps(response, default=lambda value: value.tolist())
    assert json.loads(encoded) == json.loads(expected)


@pytest.mark.parametrize(
    "result",
    [{"mean": float("inf")}, {"values": np.array([1.0, np.nan])}],
)
def test_encode_non_finite_is_internal_error(result: dict[str, Any]) -> None:
    encoded = encode({"jsonrpc": "2.0", "id": 8, "result": result})

    decoded = json.loads(encoded)
    assert decoded["id"] == 8
    assert decoded["error"]["code"] == -32603


def test_dispatch_empty_batch_is_one_error(dispatcher: Dispatcher) -> None:
    response = answer(dispatcher, [])

    assert isinstance(response, dict)
    assert response["error"]["code"] == -32600
    assert response["id"] is None


def test_dispatch_mixed_batch(dispatcher: Dispatcher) -> None:
    batch = [
        request("ping", "a"),
        {"jsonrpc": "2.0", "method": "ping"},
        17,
        request("explode", "b"),
        request("compute", "c", params={"op": "nan"}),
        request("filter", "d", params={"limit": 1}),
    ]

    responses = answer(dispatcher, batch)

    assert [r["id"] for r in responses] == ["a", None, "b", "c", "d"]
    assert responses[0]["result"]["pong"] is True
    assert responses[1]["error"]["code"] == -32600
    assert responses[2]["error"]["code"] == -32601
    assert responses[3]["error"]["code"] == -32603
    assert responses[4]["result"]["ids"] == [0]


def test_dispatch_notification_batch_gets_nothing(dispatcher: Dispatcher) -> None:
    batch = [{"jsonrpc": "2.0", "method": "ping"}] * 3

    assert answer(dispatcher, batch) is None


def test_dispatch_ping_reports_worker(
    dispatcher: Dispatcher, status: WorkerStatus
) -> None:
    answer(dispatcher, request("describe", 1))
    response = answer(dispatcher, request("ping", 2))

    result = response["result"]
    assert result["worker_id"] == "w-test0001"
    assert result["session_id"] == "session-test"
    assert result["requests"] == 2
    assert result["uptime_s"] >= 0
    assert status.requests == 2


def test_dispatch_terminate_acknowledges(
    dispatcher: Dispatcher, terminations: list[bool]
) -> None:
    response = answer(dispatcher, request("terminate", 3))

    assert response["result"] == {"terminating": True}
    assert terminations == [True]


def check_output(dispatcher: Dispatcher, raw: str | bytes) -> None:
    """Fail unless the dispatcher's output for raw is valid JSON-RPC or nothing."""
    encoded = dispatcher.handle(raw)
    if encoded is None:
        return
    decoded = json.loads(encoded)
    if isinstance(decoded, list):
        assert decoded, "a batch response must not be an empty array"
        assert all(is_valid_response(item) for item in decoded), decoded
    else:
        assert is_valid_response(decoded), decoded


def test_dispatch_random_bytes_fuzz(dispatcher: Dispatcher) -> None:
    rng = random.Random(20130101)
    fragments = [b"{", b"}", b"[", b"]", b'"jsonrpc"', b'"2.0"', b":", b",", b'"id"']
    for _ in range(3000):
        if rng.random() < 0.5:
            raw = rng.randbytes(rng.randint(0, 64))
        else:
            raw = b"".join(rng.choice(fragments) for _ in range(rng.randint(0, 20)))
        check_output(dispatcher, raw)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)

request_like = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2.0, None]) | json_values,
        "id": json_values,
        "method": st.sampled_from(
            ["ping", "describe", "filter", "compute", "terminate", "nope", ""]
        )
        | json_values,
        "params": json_values,
    },
)

messages = request_like | json_values | st.lists(request_like | json_values, max_size=5)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messages)
def test_dispatch_json_fuzz(message: Any) -> None:
    status = WorkerStatus("w-fuzz0001", "session-fuzz", "toy")
    dispatcher = Dispatcher(build_methods(ToyEngine(), status, lambda: None))

    check_output(dispatcher, json.dumps(message))
