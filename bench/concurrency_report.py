"""The section of the concurrent-sessions benchmark: targets, tables and data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import summarize
from node_child import NODE_MODULES
from report import Section, Target, ms, stats_header, stats_row

if TYPE_CHECKING:
    from bench_concurrency import LoadResult, Outcome, Plan

P99_TARGET_MS = 50.0
ANSWERED = {"ok", "rpc_error"}
# Processes whose CPU belongs to the system under test, in table order.
SYSTEM_GROUPS = ["workers", "gateways", "redis-server", "orchestrator"]
CLIENT_GROUPS = {
    "load generator": "load generator (Node.js)",
    "benchmark process": "benchmark process (Python, reads /proc)",
}
ERROR_KINDS = {
    "timeout": "timed out",
    "disconnected": "connection lost",
    "rpc_error": "JSON-RPC error in the acknowledgement",
}


def _group(process: str) -> str:
    if process.startswith("worker "):
        return "workers"
    if process.startswith("gateway "):
        return "gateways"
    return process


def cpu_groups(load: LoadResult) -> dict[str, tuple[int, float]]:
    """Return group -> (number of processes, CPU seconds used during the load)."""
    groups: dict[str, tuple[int, float]] = {}
    for process, seconds in load.cpu_s.items():
        count, total = groups.get(_group(process), (0, 0.0))
        groups[_group(process)] = (count + 1, total + seconds)
    return groups


def _answered_in_schedule(load: LoadResult, plan: Plan) -> int:
    end_ms = plan.duration_s * 1000
    return sum(
        1
        for o in load.outcomes
        if o.outcome in ANSWERED and o.done_ms is not None and o.done_ms <= end_ms
    )


def _socketio_client_version() -> str:
    package = NODE_MODULES / "socket.io-client" / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"


def _autogroup_enabled() -> bool | None:
    try:
        text = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text()
    except OSError:
        return None
    return text.strip() == "1"


def build_section(
    title: str,
    plan: Plan,
    config: dict[str, Any],
    load: LoadResult,
    memory: dict[str, Any],
    idle: dict[str, int],
) -> Section:
    ok = [o for o in load.outcomes if o.outcome == "ok"]
    errors = [o for o in load.outcomes if o.outcome != "ok"]
    kinds = Counter(o.outcome for o in errors)
    latency = summarize([o.latency_ms for o in ok if o.latency_ms is not None])
    lag = summarize([o.lag_ms for o in load.outcomes])
    answered = _answered_in_schedule(load, plan)
    throughput = answered / load.wall_s
    groups = cpu_groups(load)
    idle_per_s = idle.get("total", 0) / plan.idle_s

    section = Section(title)
    section.targets = [
        Target(
            f"{plan.sessions} sessions x 10 filters/s: errors",
            "0",
            str(len(errors)),
            not errors,
        ),
        Target(
            f"{plan.sessions} sessions x 10 filters/s: p99",
            f"< {P99_TARGET_MS:g} ms",
            f"{ms(latency.p99)} ms",
            latency.p99 < P99_TARGET_MS,
        ),
    ]
    section.data = {
        "dataset": config["dataset"],
        "sessions": plan.sessions,
        "gateways": plan.gateways,
        "worker_nice": plan.worker_nice,
        "worker_autogroup_nice": sorted(set(load.worker_nice)),
        "duration_s": plan.duration_s,
        "requests": len(load.outcomes),
        "ok": len(ok),
        "errors": len(errors),
        "error_kinds": dict(kinds),
        "shed": kinds.get("shed", 0),
        "error_samples": sorted({o.error for o in errors if o.error})[:5],
        "answered_in_schedule": answered,
        "throughput_per_s": throughput,
        "latency": latency.as_dict(),
        "send_lag": lag.as_dict(),
        "cpu_wall_s": load.wall_s,
        "machine_cpu_s": load.machine_s,
        "cpu_s": {name: total for name, (_, total) in groups.items()},
        "cpu_ms_per_answered": {
            name: 1000 * total / max(answered, 1) for name, (_, total) in groups.items()
        },
        "exited_during_load": load.exited,
        "disconnected_sessions": load.disconnected,
        "memory": memory,
        "idle_commands": idle,
        "idle_commands_per_s": idle_per_s,
        "all_ready_s": load.ready_s,
        "provision_failures": load.provision_failures,
    }
    section.lines = [
        *_setup_lines(plan, config, load),
        *_outcome_lines(plan, config, load, throughput, errors, kinds),
        *stats_header(),
        stats_row("request latency (emit to acknowledgement)", latency),
        stats_row("client emit lag behind its 100 ms grid", lag),
        "",
        *_cpu_lines(load, groups, answered),
        *_memory_lines(memory),
        f"Idle afterwards, all {plan.sessions} clients still connected: "
        f"{idle_per_s:.0f} Redis commands/s for the whole system "
        f"({idle_per_s / plan.sessions:.2f} per session) over {plan.idle_s:g} s.",
    ]
    return section


def _setup_lines(plan: Plan, config: dict[str, Any], load: LoadResult) -> list[str]:
    replicas = (
        "1 gateway replica"
        if plan.gateways == 1
        else (f"{plan.gateways} gateway replicas (sessions alternate between them)")
    )
    autogroup = {True: "on", False: "off", None: "not available"}[_autogroup_enabled()]
    nice_values = sorted(set(load.worker_nice))
    if not nice_values:
        nice = "the workers' autogroup nice could not be read"
    else:
        nice_range = " to ".join(str(v) for v in (nice_values[0], nice_values[-1]))
        nice = (
            f"{len(load.worker_nice)} workers at autogroup nice "
            f"{nice_values[0] if len(nice_values) == 1 else nice_range} "
            "(LOCAL_WORKER_NICE), the services at 0"
        )
    return [
        f"{plan.sessions} sessions on `{config['dataset']}` (one worker process "
        f"each), each sending a `filter` every {config['interval_ms']:g} ms for "
        f"{plan.duration_s:g} s through {replicas}. The load generator is one "
        f"Node.js process (`bench/load_generator.js`, socket.io-client "
        f"{_socketio_client_version()} over websocket) with one connection per "
        f"session. The filters rotate over {len(config['filters'])} shapes (facet "
        "values, a range, an exclusion, no condition), all with every facet "
        f"counted. All {plan.sessions} workers were ready {load.ready_s:.0f} s "
        "after the first connect, and each session sent every shape once before "
        f"the schedule started.{_retry_text(load)}",
        "",
        f"Kernel autogroup scheduling: {autogroup}. Each local worker runs in "
        "its own session and so its own autogroup, and so do each service and "
        "the load generator, as `make run` starts them. The local provider "
        "lowers each worker's autogroup priority so that busy workers leave "
        f"CPU to the services. This run: {nice}.",
        "",
    ]


def _retry_text(load: LoadResult) -> str:
    failures = load.provision_failures
    if not failures:
        return ""
    return (
        f" Before the load, {len(failures)} sessions failed to start and were "
        f"opened again (first: {failures[0]})."
    )


def _outcome_lines(
    plan: Plan,
    config: dict[str, Any],
    load: LoadResult,
    throughput: float,
    errors: list[Outcome],
    kinds: Counter[str],
) -> list[str]:
    offered = plan.sessions * 1000 / config["interval_ms"]
    timeout_s = config["request_timeout_ms"] / 1000
    lines = [
        f"Throughput: {throughput:.0f} requests/s answered within the schedule "
        f"(offered {offered:.0f}/s). Errors: {len(errors)} of "
        f"{len(load.outcomes)} scheduled requests; the errors target counts all "
        "of these:",
        "",
        f"- shed: {kinds.get('shed', 0)} sends skipped because the session already "
        f"had {config['max_unanswered']} requests unanswered",
    ]
    for kind, label in ERROR_KINDS.items():
        samples = sorted({o.detail for o in errors if o.outcome == kind and o.detail})
        sample = f" ({'; '.join(samples[:2])})" if samples else ""
        if kind == "timeout":
            label = f"{label} after {timeout_s:g} s"
        lines.append(f"- {label}: {kinds.get(kind, 0)}{sample}")
    if load.disconnected:
        lines.append(f"- sessions disconnected at the end: {load.disconnected}")
    return [*lines, ""]


def _cpu_lines(
    load: LoadResult, groups: dict[str, tuple[int, float]], answered: int
) -> list[str]:
    def row(name: str, count: int, seconds: float) -> str:
        per_request = 1000 * seconds / answered if answered else float("nan")
        return f"| {name} | {count} | {seconds / load.wall_s:.2f} | {ms(per_request)} |"

    system = [g for g in SYSTEM_GROUPS if g in groups]
    system_count = sum(groups[g][0] for g in system)
    system_s = sum(groups[g][1] for g in system)
    exited = (
        f" {len(load.exited)} processes exited during the load "
        f"({', '.join(load.exited[:3])}); each counts with its CPU time at the last "
        "sample before it exited."
        if load.exited
        else ""
    )
    return [
        f"CPU during the schedule: read from /proc/<pid>/stat when it started "
        f"and when it ended ({load.wall_s:.1f} s apart), so requests answered "
        "after the end are left out of both the CPU time and the request count. "
        "Cores are CPU seconds per wall second; the last column divides CPU "
        f"time by the {answered} requests answered within the schedule.{exited}",
        "",
        "| process group | processes | cores | CPU ms per answered request |",
        "|---|---:|---:|---:|",
        *(row(g, *groups[g]) for g in system),
        row("**system under test**", system_count, system_s),
        *(
            row(label, *groups[name])
            for name, label in CLIENT_GROUPS.items()
            if name in groups
        ),
        *_machine_rows(load, groups),
        "",
    ]


def _machine_rows(load: LoadResult, groups: dict[str, tuple[int, float]]) -> list[str]:
    """Return rows for CPU time outside the measured processes, from /proc/stat."""
    if not load.machine_s:
        return []
    tracked_s = sum(total for _, total in groups.values())
    other_s = load.machine_s["busy"] - tracked_s
    rows = [
        f"| other processes and the kernel (machine busy time minus the rows above) "
        f"| | {other_s / load.wall_s:.2f} | |",
        f"| idle | | {load.machine_s['idle'] / load.wall_s:.2f} | |",
    ]
    steal_cores = load.machine_s["steal"] / load.wall_s
    if steal_cores >= 0.005:
        rows.append(f"| stolen by the hypervisor | | {steal_cores:.2f} | |")
    return rows


def _memory_lines(memory: dict[str, Any]) -> list[str]:
    if not memory.get("workers"):
        return []
    mib = 2**20
    return [
        f"Memory per worker ({memory['workers']} workers, from "
        f"/proc/<pid>/smaps_rollup): RSS median "
        f"{memory['rss_median'] / mib:.0f} MiB "
        f"(max {memory['rss_max'] / mib:.0f}), PSS median "
        f"{memory['pss_median'] / mib:.0f} MiB, private (USS) median "
        f"{memory['uss_median'] / mib:.0f} MiB; PSS of all workers together "
        f"{memory['pss_total'] / 2**30:.1f} GiB. RSS counts the shared pages of "
        "numpy and pyarrow in every worker; PSS shares them out. RSS of one "
        f"gateway {(memory['gateway_rss'] or 0) / mib:.0f} MiB.",
        "",
    ]
