"""The `bellhop-worker` command line and its settings."""

from __future__ import annotations

import pytest
from bellhop_worker.main import parse_args
from bellhop_worker.settings import WorkerSettings
from pydantic import ValidationError


def test_cli_reads_session_and_dataset() -> None:
    args = parse_args(["--session", "abc", "--dataset", "flights", "--user", "u-1"])

    assert args.session == "abc"
    assert args.dataset == "flights"
    assert args.user == "u-1"


def test_cli_accepts_session_starting_with_dash() -> None:
    args = parse_args(["--session", "-Zx9_k", "--dataset", "flights"])

    assert args.session == "-Zx9_k"
    assert args.user is None


def test_cli_accepts_equals_form() -> None:
    args = parse_args(["--session=-Zx9_k", "--dataset=flights"])

    assert args.session == "-Zx9_k"
    assert args.dataset == "flights"


@pytest.mark.parametrize("session", ["", "has space", "x" * 129])
def test_cli_rejects_bad_session(session: str) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--session", session, "--dataset", "flights"])

    assert exited.value.code == 2


def test_cli_requires_dataset() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--session", "abc"])


def test_settings_read_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_ID", "w-env00001")
    monkeypatch.setenv("WORKER_IDLE_TIMEOUT_S", "7.5")
    monkeypatch.setenv("WORKER_HEARTBEAT_INTERVAL_S", "1")
    monkeypatch.setenv("WORKER_HEARTBEAT_TTL_S", "4")
    monkeypatch.setenv("BELLHOP_KEY_PREFIX", "test:")

    settings = WorkerSettings()

    assert settings.worker_id == "w-env00001"
    assert settings.idle_timeout_s == 7.5
    assert settings.heartbeat_interval_s == 1.0
    assert settings.heartbeat_ttl_s == 4.0
    assert settings.keys.queue("s") == "test:session:s:queue"


def test_settings_default_worker_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKER_ID", raising=False)

    first = WorkerSettings()
    second = WorkerSettings()

    assert first.worker_id.startswith("w-")
    assert len(first.worker_id) == 10
    assert first.worker_id != second.worker_id


def test_settings_reject_ttl_below_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_HEARTBEAT_INTERVAL_S", "5")
    monkeypatch.setenv("WORKER_HEARTBEAT_TTL_S", "5")

    with pytest.raises(ValidationError, match="WORKER_HEARTBEAT_TTL_S"):
        WorkerSettings()


def test_settings_reject_block_above_socket_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKER_BLOCK_TIMEOUT_S", "45")

    with pytest.raises(ValidationError):
        WorkerSettings()
