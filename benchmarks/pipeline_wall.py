"""Wall time, core utilisation and start-up share of a whole pipeline run, from scratch.

    python benchmarks/pipeline_wall.py config/config.yaml [--cores 2] [--repo PATH] [--keep]

Copies the repository's tracked files (``git ls-files``, as they are in the working tree) to
a temporary folder, runs ``snakemake --cores N --resources gpu=1 --configfile CONFIG`` there
and prints:

- the wall time of the snakemake command;
- the summed CPU time of every process it started (``wait4`` rusage: snakemake, each job
  and each job's workers);
- core utilisation = CPU / (cores x wall);
- the share of the wall spent in process start-up and Snakemake scheduling: the wall
  minus the time during which at least one job was inside its work (the union of the jobs'
  in-job intervals);
- per rule: jobs, summed job wall (Snakemake's start to finish), summed in-job time and,
  where recorded, summed job CPU.

In-job intervals come from ``metalr.logs.log_to``, which appends one JSON line per job
(start, end, process CPU) to ``$METALR_JOB_TIMES`` when that is set. For a checkout that
predates that record, the first and last ``[metalr HH:MM:SS]`` lines of each job's log
stand in (1 s resolution, and the time before a job's first message counts as start-up).

The last line is ``default_pipeline_s: N`` (the wall, in seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?(?:checkpoint|rule) (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
LOG = re.compile(r"^\s+log: (\S+)")
FINISHED = re.compile(r"^Finished job(?:id)?:? (\d+)")
METALR_LINE = re.compile(r"^\[metalr (\d\d:\d\d:\d\d)\]")


@dataclass
class Job:
    rule: str
    start: float
    end: float | None = None
    log: str | None = None
    work: tuple[float, float] | None = None  # in-job interval (epoch seconds)
    cpu_s: float | None = None


def copy_repo(repo: Path, dest: Path) -> None:
    files = subprocess.run(["git", "-C", str(repo), "ls-files", "-z"], check=True, capture_output=True).stdout.split(
        b"\0"
    )
    for name in filter(None, files):
        src = repo / name.decode()
        if src.is_file():  # a tracked file deleted in the working tree is left out
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())


def parse_snakemake_log(text: str) -> list[Job]:
    jobs: dict[int, Job] = {}
    stamp, pending = 0.0, None
    for line in text.splitlines():
        if m := STAMP.match(line):
            stamp = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y").timestamp()
        elif m := RULE.match(line):
            pending = Job(m.group(1), stamp)
        elif pending and (m := LOG.match(line)):
            pending.log = m.group(1).rstrip(",")
        elif pending and (m := JOBID.match(line)):
            jobs[int(m.group(1))] = pending
        elif m := FINISHED.match(line):
            if int(m.group(1)) in jobs:
                jobs[int(m.group(1))].end = stamp
        elif not line.strip():
            pass
    return [j for j in jobs.values() if j.end is not None and j.rule != "all"]


def log_interval(path: Path, day: float) -> tuple[float, float] | None:
    """First and last ``[metalr HH:MM:SS]`` of a job log, as epoch seconds on ``day``'s date."""
    if not path.is_file():
        return None
    stamps = [m.group(1) for line in path.read_text(errors="replace").splitlines() if (m := METALR_LINE.match(line))]
    if not stamps:
        return None
    date = datetime.fromtimestamp(day).strftime("%Y-%m-%d")
    first, last = (datetime.strptime(f"{date} {s}", "%Y-%m-%d %H:%M:%S").timestamp() for s in (stamps[0], stamps[-1]))
    return first, last


def union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="config file, relative to the repository (e.g. config/config.yaml)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout to copy (default: this one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy and print where it is")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="metalr-wall-"))
    try:
        work = tmp / "repo"
        copy_repo(args.repo.resolve(), work)
        times_file = tmp / "job-times.jsonl"
        env = dict(os.environ, PYTHONPATH=str(work), METALR_JOB_TIMES=str(times_file))
        # The snakemake installed beside this interpreter, so a venv works without activation.
        beside = Path(sys.executable).parent / "snakemake"
        snakemake = str(beside) if beside.is_file() else "snakemake"
        command = [snakemake, "--cores", str(args.cores), "--resources", "gpu=1", "--configfile", args.config]
        print(f"# {' '.join(command)} in {work}; load average before: {os.getloadavg()}", flush=True)
        started = time.time()
        proc = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - started
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"snakemake failed (exit {os.waitstatus_to_exitcode(status)}):\n{output[-4000:]}")
        cpu = usage.ru_utime + usage.ru_stime
        logs = sorted((work / ".snakemake" / "log").glob("*.snakemake.log"))
        jobs = parse_snakemake_log(logs[-1].read_text()) if logs else []
        recorded = {}
        if times_file.is_file():
            for line in times_file.read_text().splitlines():
                rec = json.loads(line)
                recorded[str(Path(rec["log"]).resolve())] = rec
        for job in jobs:
            rec = recorded.get(str((work / job.log).resolve())) if job.log else None
            if rec:
                job.work, job.cpu_s = (rec["start"], rec["end"]), rec["cpu_s"]
            elif job.log:
                job.work = log_interval(work / job.log, started)
        in_job = union_length([j.work for j in jobs if j.work])
        overhead = wall - in_job
        print(f"load average after: {os.getloadavg()}")
        print(f"source: {'metalr job records' if recorded else 'job log timestamps (1 s resolution)'}")
        print(f"wall: {wall:.1f} s")
        print(f"job CPU (all processes): {cpu:.1f} s")
        print(f"core utilisation: {cpu / (args.cores * wall):.1%} of {args.cores} cores")
        print(f"start-up + scheduling: {overhead:.1f} s = {overhead / wall:.1%} of wall (no job inside its work)")
        print(f"jobs: {len(jobs)}")
        rows: dict[str, list] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, False])
        for job in jobs:
            row = rows[job.rule]
            row[0] += 1
            row[1] += job.end - job.start
            row[2] += (job.work[1] - job.work[0]) if job.work else 0.0
            if job.cpu_s is not None:
                row[3] += job.cpu_s
                row[4] = True
        print(f"{'rule':<28} {'jobs':>4} {'job wall s':>10} {'in-job s':>9} {'CPU s':>7}")
        for rule, (n, job_wall, work_s, cpu_s, has_cpu) in sorted(rows.items(), key=lambda r: -r[1][1]):
            cpu_text = f"{cpu_s:7.1f}" if has_cpu else "      -"
            print(f"{rule:<28} {n:>4} {job_wall:>10.1f} {work_s:>9.1f} {cpu_text}")
        own = resource.getrusage(resource.RUSAGE_SELF)
        print(f"(this script's own CPU, not counted: {own.ru_utime + own.ru_stime:.1f} s)")
        print(f"default_pipeline_s: {wall:.0f}")
    finally:
        if args.keep:
            print(f"# kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
