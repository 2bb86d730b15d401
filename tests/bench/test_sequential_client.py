"""The Node.js client of the e2e benchmark and its Python wrapper.

The client runs against tests/bench/slow_gateway.py, which acknowledges each
request after a fixed delay, and against bench/echo_server.py, the echo
server of the e2e benchmark. Every failure must stop the benchmark with the
client's message, and the client must exit on every path.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import REPO, ServiceProcess, free_port, skip_or_fail, wait_for_port

BENCH_DIR = REPO / "bench"
sys.path.insert(0, str(BENCH_DIR))

import node_child  # noqa: E402
import sequential_client as client_module  # noqa: E402
from harness import BenchError  # noqa: E402
from node_child import find_node  # noqa: E402
from sequential_client import SequentialClient  # noqa: E402

ACK_DELAY_S = 0.1
READY_TIMEOUT_S = 10.0
REQUEST = {"jsonrpc": "2.0", "id": 0, "method": "filter", "params": {"limit": 1}}


@dataclass
class Servers:
    gateway_url: str
    echo_url: str


def _start_server(
    name: str, argv: list[str], log_dir: Path
) -> tuple[ServiceProcess, str]:
    port = free_port()
    server = ServiceProcess(
        name, [*argv, "--port", str(port)], dict(os.environ), log_dir
    )
    wait_for_port(port)
    return server, f"http://127.0.0.1:{port}"


def _start_echo_server(log_dir: Path) -> tuple[ServiceProcess, str]:
    return _start_server(
        "echo-server", [sys.executable, str(BENCH_DIR / "echo_server.py")], log_dir
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Start the slow gateway and the echo server, and return their URLs."""
    try:
        find_node()
    except BenchError as exc:
        skip_or_fail(str(exc))
    log_dir = tmp_path_factory.mktemp("servers")
    script = Path(__file__).with_name("slow_gateway.py")
    argv = [sys.executable, str(script), "--delay-s", str(ACK_DELAY_S)]
    gateway, gateway_url = _start_server("slow-gateway", argv, log_dir)
    try:
        echo, echo_url = _start_echo_server(log_dir)
        try:
            yield Servers(gateway_url, echo_url)
        finally:
            echo.stop()
    finally:
        gateway.stop()


def _client(
    servers: Servers,
    tmp_path: Path,
    dataset: str = "flights",
    request_timeout_s: float = 5.0,
    echo_url: str | None = None,
) -> AbstractAsyncContextManager[SequentialClient]:
    return client_module.sequential_client(
        servers.gateway_url,
        echo_url or servers.echo_url,
        dataset,
        READY_TIMEOUT_S,
        request_timeout_s,
        tmp_path / "client.log",
    )


def test_client_times_path_and_echo(servers: Servers, tmp_path: Path) -> None:
    async def run() -> tuple[dict[str, object], object, object, int | None]:
        async with _client(servers, tmp_path) as client:
            ready = await client.wait_ready(READY_TIMEOUT_S)
            path = await client.run_block("path", 3, REQUEST)
            echo = await client.run_block("echo", 4, REQUEST)
        return ready, path, echo, client.proc.returncode

    ready, path, echo, returncode = asyncio.run(run())

    assert ready["session_id"]
    assert str(ready["node_version"]).startswith("v")
    assert isinstance(path, client_module.Block)
    assert isinstance(echo, client_module.Block)
    assert len(path.elapsed_ms) == 3
    assert min(path.elapsed_ms) >= ACK_DELAY_S * 1000
    assert path.took_ms == [0.0, 0.0, 0.0]
    assert len(echo.elapsed_ms) == 4
    assert echo.took_ms == []
    assert returncode == 0


def test_client_fails_on_rpc_error(servers: Servers, tmp_path: Path) -> None:
    # The echo server returns the request, so a request carrying an error
    # object comes back as a JSON-RPC error response.
    failing = {**REQUEST, "error": {"code": -32000, "message": "engine failed"}}
    clients: list[SequentialClient] = []

    async def run() -> None:
        async with _client(servers, tmp_path) as client:
            clients.append(client)
            await client.wait_ready(READY_TIMEOUT_S)
            await client.run_block("echo", 2, failing)

    with pytest.raises(BenchError, match="JSON-RPC error -32000: engine failed"):
        asyncio.run(run())
    assert clients[0].proc.returncode == 1


def test_client_fails_on_timeout(servers: Servers, tmp_path: Path) -> None:
    async def run() -> None:
        async with _client(servers, tmp_path, request_timeout_s=0.02) as client:
            await client.wait_ready(READY_TIMEOUT_S)
            await client.run_block("path", 1, REQUEST)

    with pytest.raises(BenchError, match="path request 1 failed: .*timed out"):
        asyncio.run(run())


def test_client_fails_on_failed_session(servers: Servers, tmp_path: Path) -> None:
    async def run() -> None:
        async with _client(servers, tmp_path, dataset="broken") as client:
            await client.wait_ready(READY_TIMEOUT_S)

    with pytest.raises(BenchError, match="is failed: failed"):
        asyncio.run(run())


def test_client_fails_on_disconnect(servers: Servers, tmp_path: Path) -> None:
    echo, echo_url = _start_echo_server(tmp_path)

    async def run() -> None:
        async with _client(servers, tmp_path, echo_url=echo_url) as client:
            await client.wait_ready(READY_TIMEOUT_S)
            echo.stop()
            await client.run_block("echo", 1, REQUEST)

    try:
        with pytest.raises(BenchError, match="echo connection disconnected"):
            asyncio.run(run())
    finally:
        echo.stop()


def test_client_rejects_unknown_target(servers: Servers, tmp_path: Path) -> None:
    async def run() -> None:
        async with _client(servers, tmp_path) as client:
            await client.wait_ready(READY_TIMEOUT_S)
            await client.run_block("nowhere", 1, REQUEST)

    with pytest.raises(BenchError, match='unknown target "nowhere"'):
        asyncio.run(run())


def test_exception_stops_client(servers: Servers, tmp_path: Path) -> None:
    clients: list[SequentialClient] = []

    async def run() -> None:
        async with _client(servers, tmp_path) as client:
            clients.append(client)
            await client.wait_ready(READY_TIMEOUT_S)
            raise RuntimeError("the benchmark failed")

    with pytest.raises(RuntimeError, match="the benchmark failed"):
        asyncio.run(run())
    assert clients[0].proc.returncode == 0


def test_close_before_ready_stops_client(servers: Servers, tmp_path: Path) -> None:
    async def run() -> int | None:
        async with _client(servers, tmp_path) as client:
            pass
        return client.proc.returncode

    returncode = asyncio.run(run())

    # The client exits with 1 when stdin closes before its session is ready,
    # or with 0 when the session was ready first. A kill would give -9.
    assert returncode in {0, 1}


def test_missing_node_names_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(BenchError, match=r"node is not on PATH.*`make install`"):
        find_node()


def test_missing_package_names_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if shutil.which("node") is None:
        skip_or_fail("node is not on PATH, so the package check is not reached")
    monkeypatch.setattr(node_child, "NODE_MODULES", tmp_path)

    with pytest.raises(
        BenchError, match=r"socket.io-client is missing.*`make install`"
    ):
        find_node()
