"""Ingest under `wrk`, against the floor of issue 10, in one run.

    .venv/bin/python bench/ingest_wrk.py [--seconds 12] [--connections 4 16]
        [--only floor embedded reactor-thread no-worker] [--processes 0 2] [--rounds 3]
        [--profile DIR [--gil]]

Starts the floor server (bench/floor_server.py: Starlette, orjson, one writer thread
appending Arrow to DuckDB, answering after COMMIT; no validation, identity or dedupe) and
`traction serve` (embedded: its reactors in a process of their own, unless `reactor-thread`;
then `--no-worker`) on fresh data dirs, and drives each with the
same load: `wrk` with a thread a connection, unique 100-event Segment batches to `/v1/batch` (a Lua
script makes every messageId unique; 10,000 users). Prints events/s, the p50/p99/p99.9 the
script measured, wrk's own p99 (after its correction for coordinated omission: see `wrk`)
and the ratio to the floor at each connection count. Only 2xx count (a 2xx means committed).
`cpu µs/ev` is the server process's CPU time an event, `children` its children's (the
reactor process, ingest processes): all of it comes out of the same cores.

The box's speed drifts by up to a quarter between runs minutes apart, so each server runs
right after the floor at the same connection count, and `--rounds N` repeats the set and ends
with each server's median (and lowest) ratio to its own round's floor.

Settings reach the Traction servers from the environment, so an A/B is two runs, e.g.
`TRACTION_EVENT_TAIL_MB=0 .venv/bin/python bench/ingest_wrk.py --only floor embedded`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

LUA = r"""
-- One connection a thread, so a thread's response answers its last request: the script
-- times each request itself (wrk's own percentiles add samples, see `wrk` below).
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long sec; long nsec; } tspec; int clock_gettime(int, tspec*); ]]
local ts = ffi.new("tspec")
local function now() ffi.C.clock_gettime(1, ts); return tonumber(ts.sec) + tonumber(ts.nsec) / 1e9 end
local counter = 0
local threads = 0
local all = {}
function setup(thread)
  all[#all + 1] = thread
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  prefix = args[1] .. "-" .. tid
  auth = args[2]
  lat = {}
end
function response(status, headers, body)
  lat[#lat + 1] = now() - sent
end
function done(summary, latency, requests)
  local v = {}
  for _, t in ipairs(all) do
    for _, x in ipairs(t:get("lat")) do v[#v + 1] = x end
  end
  if #v == 0 then return end
  table.sort(v)
  for _, p in ipairs({50, 99, 99.9}) do
    io.write(string.format("measured %s%% %.3f ms\n", p, 1000 * v[math.max(1, math.ceil(#v * p / 100))]))
  end
end
function request()
  counter = counter + 1
  sent = now()
  local parts = {}
  for i = 1, 100 do
    parts[i] = string.format(
      '{"type":"track","event":"feature_used","userId":"u%d","messageId":"%s-%d-%d",' ..
      '"timestamp":"2026-12-01T10:00:00Z","properties":{"feature":"reports","n":%d}}',
      (counter * 100 + i) % 10000, prefix, counter, i, i)
  end
  local body = '{"batch":[' .. table.concat(parts, ",") .. ']}'
  local headers = {["Content-Type"] = "application/json"}
  if auth ~= "" then headers["Authorization"] = "Basic " .. auth end
  return wrk.format("POST", "/v1/batch", headers, body)
end
"""


def free_port() -> int:
    from tests.conftest import free_port as pick

    return pick()


def wait_up(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not start")


def start_floor(data: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench/floor_server.py"), "--port", str(port),
                             "--data", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_up(f"http://127.0.0.1:{port}/")
    first_batch(f"http://127.0.0.1:{port}", "")
    return proc


def start_traction(
    data: Path, port: int, worker: bool, processes: int, reactor_process: bool = True
) -> tuple[subprocess.Popen[bytes], str]:
    from traction.settings import Settings
    from traction.store.state import StateStore
    from traction.workspaces.service import WorkspaceService

    settings = Settings(data_dir=data, log_json=False)
    settings.ensure_dirs()
    state = StateStore(settings.resolved_state_url)
    state.migrate()
    key = WorkspaceService(state).create_workspace("Bench").write_key
    state.dispose()
    env = {**os.environ, "TRACTION_INGEST_RATE_LIMIT": "10000000/second",
           "TRACTION_RUN_WORKER": "true" if worker else "false",
           "TRACTION_INGEST_PROCESSES": str(processes),
           "TRACTION_REACTOR_PROCESS": "true" if reactor_process else "false"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "traction.cli", "serve", "--port", str(port),
                             "--data-dir", str(data), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_up(f"http://127.0.0.1:{port}/healthz")
    warm_up(f"http://127.0.0.1:{port}", key, processes)
    return proc, key


def first_batch(url: str, key: str) -> None:
    """One batch of the load's shape before it starts, not counted: a server's first batch
    does one-off work (imports, the first append; up to 2 s for the floor on this box), which
    is 1% of a 4-connection run's requests and so would be its p99. The load measures the
    steady state."""
    batch = [{"type": "track", "event": "feature_used", "userId": f"u{i}", "messageId": f"warm-{i}",
              "timestamp": "2026-12-01T10:00:00Z", "properties": {"feature": "reports", "n": i}}
             for i in range(100)]  # fmt: skip
    auth = (key, "") if key else None
    httpx.post(url + "/v1/batch", json={"batch": batch}, auth=auth, timeout=60).raise_for_status()


def warm_up(url: str, key: str, wanted: int) -> None:
    """The first tracking batch starts the ingest processes: wait until they are ready (the
    gauge says how many), so the load measures them and not their start; then the reactors
    have caught up with it."""
    first_batch(url, key)
    for _ in range(300):
        text = httpx.get(url + "/metrics", timeout=10).text
        m = re.search(r"^traction_ingest_processes ([\d.]+)$", text, re.M)
        if m is None or float(m.group(1)) >= wanted:
            break
        time.sleep(0.1)
    catch_up(url)


def wrk(
    url: str, connections: int, seconds: int, script: Path, prefix: str, key: str
) -> dict[str, float]:
    """wrk's own percentiles are after its correction for coordinated omission
    (`stats_correct`: a request that took L adds samples at L - i, L - 2i, ... down to 2i,
    i being the mean time between a connection's requests). That models clients sending at a
    steady rate, which a stall delays too: one 330 ms stall at 4 connections of ~9 ms
    requests adds ~140 samples between 18 and 330 ms, 3% of a run, and sets its p99. Both are
    printed: the p50/p99 the script measured (each request, send to response) and wrk's p99
    (`p99 wrk`), which tells how long the stalls were."""
    import base64

    auth = base64.b64encode(f"{key}:".encode()).decode() if key else ""
    out = subprocess.run(["wrk", f"-t{connections}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          url + "/v1/batch", "--", prefix, auth], capture_output=True, text=True, check=True).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    good = total - (int(bad.group(1)) if bad else 0)

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    def measured(p: str) -> float:
        m = re.search(rf"^measured {p}% ([\d.]+) ms$", out, re.M)
        assert m, out
        return float(m.group(1))

    return {"events_s": rps * 100 * good / max(total, 1), "p50": measured("50"), "p99": measured("99"),
            "p999": measured("99.9"), "p99_wrk": pct("99"), "errors": total - good}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user + system, all its threads; not its children).
    Per event, a steadier figure than events/s on a box whose speed drifts."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The process's children (the reactor process, ingest processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # (gone meanwhile)
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def children_cpu_seconds(pid: int) -> float:
    """The CPU time so far of the process's children: they take it from the same two cores."""
    total = 0.0
    for child in children(pid):
        try:
            total += cpu_seconds(child)
        except OSError:  # (gone meanwhile)
            continue
    return total


def reactor_lag(url: str) -> float:
    """The furthest-behind reactor's lag, from the server's Prometheus metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    lags = re.findall(r"^traction_reactor_lag_events\{[^}]*\} ([\d.e+]+)$", text, re.M)
    return max((float(v) for v in lags), default=0.0)


def catch_up(url: str) -> dict[str, float]:
    """What resting under load cost: how far the reactors were behind when the load stopped,
    and how long they took to catch up once it was quiet."""
    start, lag = time.perf_counter(), reactor_lag(url)
    while reactor_lag(url) > 0 and time.perf_counter() - start < 300:
        time.sleep(0.25)
    return {"lag": lag, "catch_up": time.perf_counter() - start}


def py_spy(pid: int, out: Path, seconds: int, gil: bool = False) -> list[subprocess.Popen[bytes]]:
    """Samples the server, and each of its children into `out`'s name + `-child<pid>`, for the
    load's duration; `--format raw` gives collapsed stacks that `sort | uniq`-style tallies
    (or speedscope) read. `gil`: only samples of the thread holding the GIL (what the one
    interpreter does, serially); else every thread, idle ones too (where each thread's wall
    time goes)."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    outs = [(pid, out)] + [
        (c, out.with_name(f"{out.stem}-child{c}{out.suffix}")) for c in children(pid)
    ]
    return [subprocess.Popen([exe, "record", "--pid", str(p), "--duration", str(seconds), "--rate", "200",
                              "--format", "raw", "--threads", *(["--gil"] if gil else ["--idle"]), "--output", str(o), "--nonblocking"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p, o in outs]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=int, default=12)
    ap.add_argument("--connections", type=int, nargs="+", default=[4, 16])
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["floor", "embedded", "reactor-thread", "no-worker"],
        default=["floor", "embedded", "no-worker"],
        help="which servers to drive (reactor-thread: embedded with `reactor_process` off)",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record each Traction run with py-spy (collapsed stacks, all threads)",
    )
    ap.add_argument("--gil", action="store_true", help="with --profile: GIL-holding samples only")
    ap.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[0, os.cpu_count() or 1],
        help="ingest processes of each Traction server (0: none; several: one run each)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the whole set, each server right after the floor at the same connections; "
        "the summary gives each server's median ratio to its round's floor",
    )
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="traction-wrk-"))
    script = tmp / "batch.lua"
    script.write_text(LUA)
    rows: list[Row] = []
    try:
        runs = [(k, n) for k in a.only for n in ([0] if k == "floor" else a.processes)]
        for r in range(a.rounds):
            for c in a.connections:  # (the floor and the servers back to back: same box speed)
                for k, n in runs:
                    name = NAMES[k] if k == "floor" else f"{NAMES[k]} {n}p"
                    data, tag = tmp / f"{len(rows)}", f"r{len(rows)}"
                    res = drive(k, n, c, a, data, script, tag)
                    rows.append(Row(r, name, c, res))
                    lag = (f"  reactors {res['lag']:,.0f} events behind at the end, caught up in "
                           f"{res['catch_up']:.1f} s") if "lag" in res else ""  # fmt: skip
                    print(f"{name:<30} {c:>3} conn  {res['events_s']:>9,.0f} events/s  p50 {res['p50']:7.1f} ms  "
                          f"p99 {res['p99']:7.1f} ms  p99.9 {res['p999']:7.1f} ms  p99 wrk {res['p99_wrk']:7.1f} ms  cpu {res['cpu_us']:5.1f} + {res['child_cpu_us']:4.1f} µs/event  non-2xx {res['errors']:.0f}{lag}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    floor = {(row.round, row.conn): row.res["events_s"] for row in rows if row.name == "floor"}
    print(
        f"\n{'':<30} {'conn':>4} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'p99 wrk':>8} {'vs floor':>9} {'cpu µs/ev':>9} {'children':>8}"
    )
    for row in rows:
        r, base = row.res, floor.get((row.round, row.conn))
        print(f"{row.name:<30} {row.conn:>4} {r['events_s']:>10,.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['p999']:>9.1f} {r['p99_wrk']:>8.1f} "
              f"{r['events_s'] / base if base else float('nan'):>9.2f} {r['cpu_us']:>9.1f} {r['child_cpu_us']:>8.1f}")  # fmt: skip
    if a.rounds > 1:
        summary(rows, floor)


NAMES = {"floor": "floor", "embedded": "traction serve (embedded)",
         "reactor-thread": "traction serve (reactor thread)",
         "no-worker": "traction serve --no-worker"}  # fmt: skip


@dataclass
class Row:
    round: int
    name: str
    conn: int
    res: dict[str, float]


def drive(
    kind: str, processes: int, conn: int, a: argparse.Namespace, data: Path, script: Path, tag: str
) -> dict[str, float]:
    """One server on a fresh data dir under `wrk`: its figures."""
    port = free_port()
    if kind == "floor":
        proc, key = start_floor(data, port), ""
    else:
        proc, key = start_traction(
            data, port, kind != "no-worker", processes, kind != "reactor-thread"
        )
    spies: list[subprocess.Popen[bytes]] = []
    if a.profile is not None and kind != "floor":
        spies = py_spy(
            proc.pid, a.profile / f"{kind}-{processes}p-{conn}-{tag}.txt", a.seconds, a.gil
        )
    try:
        cpu, child_cpu = cpu_seconds(proc.pid), children_cpu_seconds(proc.pid)
        res = wrk(f"http://127.0.0.1:{port}", conn, a.seconds, script, tag, key)
        events = res["events_s"] * a.seconds
        res["cpu_us"] = (cpu_seconds(proc.pid) - cpu) / max(events, 1) * 1e6
        res["child_cpu_us"] = (children_cpu_seconds(proc.pid) - child_cpu) / max(events, 1) * 1e6
        if kind not in ("floor", "no-worker"):
            res.update(catch_up(f"http://127.0.0.1:{port}"))
    finally:
        for spy in spies:
            spy.wait(timeout=120)
        proc.terminate()
        proc.wait(timeout=60)
    return res


def summary(rows: list[Row], floor: dict[tuple[int, int], float]) -> None:
    """Per server and connection count, over the rounds: the median and the lowest ratio to
    the same round's floor, and the medians of the rest (the box's speed drifts between
    rounds; a ratio within a round drifts less)."""
    print(
        f"\nover the rounds: {'':<14} {'conn':>4} {'ratio med':>9} {'min':>5} {'events/s':>10} {'p99 ms':>8} {'p99 wrk':>8}"
    )
    groups: dict[tuple[str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.name, row.conn), []).append(row)
    for (name, conn), group in groups.items():
        ratios = [
            x.res["events_s"] / floor[(x.round, conn)] for x in group if (x.round, conn) in floor
        ]
        print(f"{name:<30} {conn:>4} {statistics.median(ratios):>9.2f} {min(ratios):>5.2f} {_median(group, 'events_s'):>10,.0f} "
              f"{_median(group, 'p99'):>8.1f} {_median(group, 'p99_wrk'):>8.1f}")  # fmt: skip


def _median(rows: list[Row], key: str) -> float:
    return statistics.median(x.res[key] for x in rows)


if __name__ == "__main__":
    main()
