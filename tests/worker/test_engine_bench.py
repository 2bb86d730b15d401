"""The kernel benchmark's quick mode runs and prints its table."""

from __future__ import annotations

import subprocess
import sys

from support import REPO


def test_kernel_bench_quick_prints_table() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_kernel.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert lines[0].startswith("| rows | matches | engine count ms")
    assert lines[2].startswith("| 10,000 | 223 |")
    assert lines[3].startswith("| 100,000 | 1,991 |")
