"""Sample running services with py-spy and summarize where their CPU time goes.

py-spy attaches to a pid from outside (ptrace), so the profiled service runs
its normal code. `--gil` keeps only samples of the thread that holds the GIL,
which is Python's CPU time. A thread waiting on a socket or an event releases
the GIL, while py-spy's own idle detection counted such waits as busy on this
machine. numpy releases the GIL inside some array loops, so that time is
undercounted. `--nonblocking` reads the stacks without pausing the process,
at the price of an occasional torn stack.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness import VENV_BIN

SAMPLE_RATE_HZ = 500
# A frame in py-spy's raw (collapsed) output: "function (path/to/file.py:123)".
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def find_py_spy() -> str | None:
    candidate = VENV_BIN / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    """A py-spy process recording one target pid into a collapsed-stack file."""

    name: str
    output: Path
    proc: subprocess.Popen[bytes]

    def wait(self, timeout_s: float) -> str | None:
        """Wait for py-spy to finish; return its error text when it failed."""
        try:
            _, stderr = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return f"py-spy on {self.name} did not finish in {timeout_s:g} s"
        if self.proc.returncode != 0 or not self.output.exists():
            text = stderr.decode(errors="replace").strip().splitlines()
            return f"py-spy on {self.name} failed: {text[0] if text else 'no output'}"
        return None


def start_recording(
    py_spy: str, name: str, pid: int, duration_s: float, out_dir: Path
) -> Recording:
    output = out_dir / f"py-spy-{name}.txt"
    argv = [py_spy, "record", "--pid", str(pid), "--duration", f"{duration_s:g}"]
    argv += ["--rate", str(SAMPLE_RATE_HZ), "--format", "raw", "--gil", "--nonblocking"]
    argv += ["--full-filenames"]
    argv += ["--output", str(output)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return Recording(name, output, proc)


def _parse_frame(frame: str) -> tuple[str, str]:
    """Return (function label, package) for one collapsed-stack frame."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), "other"
    path = match.group("file")
    return f"{match.group('function')} ({_short_path(path)})", _package(path)


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/", 1)[-1]


def _package(path: str) -> str:
    short = _short_path(path)
    if "/" not in short:
        # A standard library module at the top level, such as json.py.
        return short.removesuffix(".py")
    return short.split("/", 1)[0]


@dataclass
class ProfileSummary:
    """Samples of one process: total, and counts per function and per package."""

    name: str
    samples: int
    inclusive: Counter[str]
    self_by_function: Counter[str]
    self_by_package: Counter[str]

    def share(self, count: int) -> float:
        return 100.0 * count / self.samples if self.samples else 0.0


def summarize_collapsed(name: str, path: Path) -> ProfileSummary:
    """Read py-spy's raw output: one `frame;frame;... count` line per stack."""
    inclusive: Counter[str] = Counter()
    self_by_function: Counter[str] = Counter()
    self_by_package: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_parse_frame(frame) for frame in stack.split(";") if frame]
        total += count
        for label in {label for label, _ in frames}:
            inclusive[label] += count
        if frames:
            self_by_function[frames[-1][0]] += count
            self_by_package[frames[-1][1]] += count
    return ProfileSummary(name, total, inclusive, self_by_function, self_by_package)


def profile_markdown(summary: ProfileSummary, top: int = 10) -> list[str]:
    """Return markdown tables of self time per package and per function.

    A third table lists Bellhop's own functions with their callees included.
    """
    lines = [
        f"{summary.name}: {summary.samples} samples with the GIL held, at "
        f"{SAMPLE_RATE_HZ} Hz.",
        "",
        "| package | self % |",
        "|---|---:|",
    ]
    for package, count in summary.self_by_package.most_common(top):
        lines.append(f"| {package} | {summary.share(count):.1f} |")
    lines += ["", "| function (file) | self % |", "|---|---:|"]
    for label, count in summary.self_by_function.most_common(top):
        lines.append(f"| `{label}` | {summary.share(count):.1f} |")
    lines += ["", "| Bellhop function (file) | inclusive % |", "|---|---:|"]
    for label, count in _own_frames(summary, top):
        lines.append(f"| `{label}` | {summary.share(count):.1f} |")
    return lines


def _own_frames(summary: ProfileSummary, top: int) -> list[tuple[str, int]]:
    """Return Bellhop's frames, leaving out the entry frames found in every stack."""
    ceiling = 0.95 * summary.samples
    own = [
        (label, count)
        for label, count in summary.inclusive.most_common()
        if "(bellhop_" in label and count < ceiling
    ]
    return own[:top]


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(
            "\n".join(profile_markdown(summarize_collapsed(argument, Path(argument))))
        )
