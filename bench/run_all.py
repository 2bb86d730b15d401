"""Run the end-to-end benchmark suite and write its sections of docs/benchmarks.md.

    python bench/run_all.py            # full run, about 15 minutes on 2 cores
    python bench/run_all.py --quick    # smoke run, well under 2 minutes

The full run rewrites this suite's sections of docs/benchmarks.md (sections
that other scripts or people wrote stay as they are). The quick run prints
its markdown and writes the page only when --output is given. --json writes
every number, and the answers that were compared, for tests and scripts.
Each benchmark starts its own redis-server and services on free loopback
ports and stops them when it ends. The exit status is 1 when any benchmark
failed to run; a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

import bench_concurrency
import bench_duckdb
import bench_e2e
import bench_polling
import bench_spawn
import bench_stateless
from harness import REPO, dump_json, log, machine_info
from report import Context, Section, verdict, write_sections

DEFAULT_PAGE = REPO / "docs" / "benchmarks.md"
SUITE_TITLE = "End-to-end suite: run conditions and targets"

# Each benchmark module has run(ctx) -> Section and the TITLE of its section.
BENCHMARKS: dict[str, ModuleType] = {
    "e2e": bench_e2e,
    "polling": bench_polling,
    "stateless": bench_stateless,
    "concurrency": bench_concurrency,
    "spawn": bench_spawn,
    "duckdb": bench_duckdb,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and short runs, for CI"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        help="run only this benchmark; repeat for several",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="page to write (default: docs/benchmarks.md for a full run, "
        "none for --quick)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="write all numbers here"
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the py-spy recordings"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="directory for service logs and profiles (default: a new temp dir)",
    )
    return parser.parse_args(argv)


def run_one(name: str, ctx: Context) -> Section:
    log(f"{name}: starting")
    started = time.monotonic()
    try:
        section = BENCHMARKS[name].run(ctx)
    except Exception as exc:
        traceback.print_exc()
        title = BENCHMARKS[name].TITLE
        section = Section(title=title, error=f"{type(exc).__name__}: {exc}")
    section.data["duration_s"] = round(time.monotonic() - started, 1)
    log(f"{name}: done in {section.data['duration_s']} s")
    return section


def suite_section(
    sections: list[Section], machine: dict[str, object], command: str, duration_s: float
) -> Section:
    finished = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"Command: `{command}`, finished {finished} after "
        f"{duration_s / 60:.1f} minutes.",
        "",
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB RAM, Linux {machine['kernel']}; Python "
        f"{machine['python']}, numpy {machine['numpy']}, pyarrow {machine['pyarrow']}, "
        f"DuckDB {machine['duckdb']}, redis-server {machine['redis_server']}. "
        f"Load average at the start: {_loadavg(machine['loadavg_start'])}; at the end: "
        f"{_loadavg(machine['loadavg_end'])}. Other jobs shared the machine, so "
        "compare numbers within one run, not across runs.",
        "",
        "| target | goal | measured | result |",
        "|---|---|---|---|",
    ]
    for section in sections:
        for target in section.targets:
            lines.append(
                f"| {target.name} | {target.goal} | {target.measured} | "
                f"{verdict(target.met)} |"
            )
        if section.error is not None:
            lines.append(f"| {section.title} | | failed to run | error |")
    return Section(SUITE_TITLE, lines, data={"machine": machine})


def _loadavg(values: object) -> str:
    return ", ".join(f"{v:.2f}" for v in values)  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.only or list(BENCHMARKS)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="bellhop-bench-"))
    ctx = Context(quick=args.quick, work_dir=work_dir, profile=not args.no_profile)
    log(f"logs and profiles go to {work_dir}")
    machine = machine_info()
    started = time.monotonic()
    sections = []
    for name in names:
        ctx.results[name] = run_one(name, ctx)
        sections.append(ctx.results[name])
    machine["loadavg_end"] = os.getloadavg()
    command = shlex.join(["python", "bench/run_all.py", *(argv or sys.argv[1:])])
    suite = suite_section(sections, machine, command, time.monotonic() - started)
    sections.insert(0, suite)
    _write_outputs(args, sections)
    return 1 if any(section.error for section in sections) else 0


def _write_outputs(args: argparse.Namespace, sections: list[Section]) -> None:
    output = args.output or (None if args.quick else DEFAULT_PAGE)
    if output is not None:
        write_sections(output, sections)
        log(f"wrote {output}")
    else:
        print("\n".join(section.markdown() for section in sections))
    if args.json is not None:
        dump_json(args.json, {s.title: {**s.data, "error": s.error} for s in sections})


if __name__ == "__main__":
    sys.exit(main())
