"""Run a command in a child process and measure its own resource use (peak RSS, CPU seconds, page faults).

The child is started through a small launcher that fork()s and exec()s it and reports the child's
rusage. Reading ru_maxrss of a child spawned directly from a large benchmark process is wrong on
Linux: subprocess uses vfork/fork, and exec() keeps the high-water RSS of the address space it
replaces, so every direct child would report at least the parent's own peak (seen: ~1 GB for
``python -c pass``). The launcher's fork() copies only the launcher's small address space.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAUNCHER = r"""
import json, os, sys
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
with open(out + ".pid", "w") as fh:
    fh.write(str(pid))
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as fh:
    json.dump({"maxrss_kb": ru.ru_maxrss, "user": ru.ru_utime, "sys": ru.ru_stime, "minflt": ru.ru_minflt}, fh)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(cmd: list[str], cwd, env: dict | None = None) -> tuple[int, float, dict, str]:
    """Run ``cmd`` (its first item an executable path) in ``cwd``; return (exit code, wall seconds,
    usage {"rss_bytes", "user", "sys", "minflt"} of the child alone ({} if it did not report), stderr).
    Ctrl-C stops the launcher and its child."""
    with tempfile.TemporaryDirectory(prefix="bench_usage_") as d:
        usage_file, err_file = Path(d) / "usage", Path(d) / "stderr"
        t0 = time.perf_counter()
        with open(err_file, "wb") as err:
            proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(usage_file), *cmd], cwd=cwd, env=env,
                                    stdout=subprocess.DEVNULL, stderr=err)
            try:
                code = proc.wait()
            except BaseException:                   # Ctrl-C: stop the launcher and its child (by pid)
                pid_file = Path(str(usage_file) + ".pid")
                if pid_file.exists():
                    try:
                        os.kill(int(pid_file.read_text()), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                proc.kill()
                proc.wait()
                raise
        wall = time.perf_counter() - t0
        usage = {}
        if usage_file.exists():
            raw = json.loads(usage_file.read_text())
            usage = {"rss_bytes": raw["maxrss_kb"] * 1024, "user": raw["user"], "sys": raw["sys"],
                     "minflt": raw["minflt"]}
        return code, wall, usage, err_file.read_text(errors="replace")
