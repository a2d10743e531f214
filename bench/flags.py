"""Local flag evaluation: Traction's evaluator against the `growthbook` package, same payload,
same users, same run; then (--http) remote evaluation over HTTP beside /healthz.

    .venv/bin/python bench/flags.py [--users 10000] [--runs 3] [--http --rate 1000 --seconds 10]

The payload is what a product's 50 flags look like: targeted force rules (plan, country,
version, saved groups), percentage rollouts, experiments with weights and conditions, a few
prerequisites. Every user evaluates every flag; the figure is evaluations per second (the
best of --runs), and both evaluators must agree on every value.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

COUNTRIES = ["US", "GB", "DE", "FR", "IN", "BR", "JP", "CA"]
PLANS = ["free", "pro", "business"]


def payload(seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    features: dict[str, Any] = {}
    for i in range(50):
        key = f"flag-{i:02d}"
        kind = i % 5
        if kind == 0:  # targeted on/off
            rules = [{"id": f"r{i}", "condition": {"plan": {"$in": ["pro", "business"]},
                                                  "country": {"$nin": ["BR"]}}, "force": True}]  # fmt: skip
            features[key] = {"defaultValue": False, "rules": rules}
        elif kind == 1:  # percentage rollout
            features[key] = {"defaultValue": False, "rules": [
                {"id": f"r{i}", "force": True, "coverage": rng.choice([0.1, 0.25, 0.5]),
                 "hashAttribute": "id", "seed": key, "hashVersion": 2}]}  # fmt: skip
        elif kind == 2:  # experiment
            features[key] = {"defaultValue": "control", "rules": [
                {"id": f"r{i}", "key": f"exp-{i}", "variations": ["control", "a", "b"],
                 "weights": [0.34, 0.33, 0.33], "coverage": 0.9, "hashAttribute": "id",
                 "hashVersion": 2, "seed": f"exp-{i}", "condition": {"employees": {"$gte": 5}},
                 "meta": [{"key": "0"}, {"key": "1"}, {"key": "2"}]}]}  # fmt: skip
        elif kind == 3:  # config value by version and saved group
            features[key] = {"defaultValue": {"limit": 10}, "rules": [
                {"id": f"r{i}a", "condition": {"id": {"$inGroup": "beta-testers"}}, "force": {"limit": 100}},
                {"id": f"r{i}b", "condition": {"version": {"$vgte": "2.4.0"}, "email": {"$regex": "@acme\\.com$"}},
                 "force": {"limit": 50}}]}  # fmt: skip
        else:  # gated on another flag
            features[key] = {"defaultValue": 0, "rules": [
                {"id": f"r{i}", "parentConditions": [{"id": f"flag-{i - 4:02d}", "condition": {"value": True}}],
                 "force": 1}, {"id": f"r{i}x", "condition": {"$or": [{"beta": True}, {"country": "JP"}]}, "force": 2}]}  # fmt: skip
    return {
        "features": features,
        "savedGroups": {"beta-testers": [f"u{i}" for i in range(0, 10_000, 37)]},
    }


def users(n: int, seed: int = 2) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": f"u{i}", "country": rng.choice(COUNTRIES), "plan": rng.choice(PLANS),
             "email": f"user{i}@{rng.choice(['acme.com', 'example.org'])}",
             "version": f"{rng.randint(1, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}",
             "employees": rng.randint(1, 500), "beta": rng.random() < 0.1} for i in range(n)]  # fmt: skip


def ours(p: dict[str, Any], people: list[dict[str, Any]]) -> tuple[float, list[Any]]:
    from traction.flags.domain.evaluate import Context, Evaluator

    t = time.perf_counter()
    ev = Evaluator(p)
    keys = list(p["features"])
    values = []
    for u in people:
        ctx = Context(attributes=u)
        values.extend(ev.evaluate(k, ctx).value for k in keys)
    return time.perf_counter() - t, values


def theirs(p: dict[str, Any], people: list[dict[str, Any]]) -> tuple[float, list[Any]]:
    from growthbook import GrowthBook

    t = time.perf_counter()
    gb = GrowthBook(features=p["features"], saved_groups=p["savedGroups"])
    keys = list(p["features"])
    values = []
    for u in people:
        gb.set_attributes(u)
        values.extend(gb.eval_feature(k).value for k in keys)
    return time.perf_counter() - t, values


def remote(rate: float, seconds: float) -> None:
    """`traction serve` on a fresh data dir with the same 50 flags; `hey` at a steady rate:
    first `GET /healthz`, then `POST /api/eval/{client key}` (every flag for one user)."""
    import os
    import sys
    import tempfile
    from pathlib import Path

    import httpx

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from entitlements import hey, serving

    from traction.context import Context
    from traction.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        ctx = Context.open(Settings(data_dir=data, log_json=False), start_writer=False)
        ws = ctx.workspaces.create_workspace("Bench").id
        p = payload()
        for group, values in p["savedGroups"].items():
            ctx.flags.put_group(ws, group, values)
        for key, f in p["features"].items():
            ctx.flags.put(ws, key, {"value_type": "json", "default_value": f["defaultValue"],
                                    "environments": {"production": {"rules": f["rules"]}}})  # fmt: skip
        client_key = next(
            k["key"] for k in ctx.flags.sdk_keys(ws) if k["environment"] == "production"
        )
        ctx.close()
        env = {**os.environ, "TRACTION_API_RATE_LIMIT": "1000000/second"}
        with serving(data, 18410, env) as url:
            body = {"attributes": users(1)[0]}
            assert httpx.post(f"{url}/api/eval/{client_key}", json=body).status_code == 200
            health = hey(url, "none", "/healthz", None, rate, seconds)
            evals = hey(url, "none", f"/api/eval/{client_key}", body, rate, seconds)
    print(f"\n{'at ' + str(int(rate)) + ' requests/s':<34}{'p50 ms':>9}{'p99 ms':>9}{'200s':>8}")
    for label, (p50, p99, n) in (("GET /healthz", health), ("POST /api/eval (50 flags)", evals)):
        print(f"{label:<34}{p50 * 1000:>9.2f}{p99 * 1000:>9.2f}{n:>8}")
    print(f"remote evaluation p99 / healthz p99: {evals[1] / health[1]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--http", action="store_true", help="also remote evaluation over HTTP")
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    p, people = payload(), users(a.users)
    n = len(people) * len(p["features"])
    best: dict[str, float] = {}
    for _ in range(a.runs):
        for name, fn in (("traction", ours), ("growthbook", theirs)):
            seconds, values = fn(p, people)
            best[name] = min(best.get(name, seconds), seconds)
            if name == "traction":
                mine = values
            elif values != mine:
                raise SystemExit("the evaluators disagree: a bug")
    import growthbook

    print(
        f"{n:,} evaluations (50 flags x {len(people):,} users), best of {a.runs}; values identical\n"
    )
    print(f"{'evaluator':<28}{'evals/s':>12}{'us/eval':>10}{'ratio':>8}")
    for name in ("growthbook", "traction"):
        label = f"growthbook {growthbook.__version__}" if name == "growthbook" else "traction"
        print(f"{label:<28}{n / best[name]:>12,.0f}{best[name] / n * 1e6:>10.2f}"
              f"{best['growthbook'] / best[name]:>8.2f}")  # fmt: skip
    if a.http:
        remote(a.rate, a.seconds)


if __name__ == "__main__":
    main()
