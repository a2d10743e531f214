"""Dashboard page times on a running server (the lists, the scorecard fragment), best of 3.

    .venv/bin/traction demo            # in one terminal (or any server with data)
    .venv/bin/python bench/pages.py [--url http://127.0.0.1:8000] [--email …] [--password …]

Each page is timed over HTTP with a logged-in session, as a browser would fetch it; the
baseline is the Events page (a top-N query), measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import httpx

PAGES = ["/events", "/persons", "/persons?q=acct0026", "/persons?page=400", "/accounts",
         "/accounts?sort=events_30d", "/accounts?q=pro", "/data", "/scorecard/rows"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--email", default="demo@traction.local")
    ap.add_argument("--password", default="traction-demo")
    args = ap.parse_args()
    c = httpx.Client(base_url=args.url, timeout=120)
    if c.post("/login", data={"email": args.email, "password": args.password}).status_code != 303:
        raise SystemExit("login refused: give --email and --password")
    ws = c.get("/", follow_redirects=False).headers["location"].split("/")[2]
    times = {}
    for path in PAGES:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            r = c.get(f"/w/{ws}{path}")
            best = min(best, time.perf_counter() - t0)
        r.raise_for_status()
        times[path] = best
    base = times["/events"]
    print(f"{'page':<32}{'ms':>8}{'vs events':>11}")
    for path, t in times.items():
        print(f"{path:<32}{t * 1000:>8.1f}{t / base:>11.2f}")


if __name__ == "__main__":
    main()
