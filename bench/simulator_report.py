"""What the default simulation looks like, computed from its messages (for docs/simulator.md).

.venv/bin/python bench/simulator_report.py [--people 20000 --days 120 --seed 7]
"""

from __future__ import annotations

import argparse
import collections
import time
from datetime import date

from traction.simulate.world import ONBOARDING_STEPS, SimulationParams, World


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    params = SimulationParams(people=a.people, days=a.days, seed=a.seed)
    t0 = time.perf_counter()
    visitors: dict[str, str] = {}
    signups: dict[str, date] = {}
    channel_of_user: dict[str, str] = {}
    first: dict[str, dict[str, date]] = collections.defaultdict(dict)
    active: dict[str, set[date]] = collections.defaultdict(set)
    names: collections.Counter[str] = collections.Counter()
    n = 0
    world = World(params)
    locks: collections.Counter[str] = collections.Counter()
    for day in world.run():
        for m in day:
            n += 1
            d = date.fromisoformat(m["timestamp"][:10])
            if m["type"] == "page" and "userId" not in m:
                visitors.setdefault(m["anonymousId"], "")
            if m["type"] != "track":
                continue
            names[m["event"]] += 1
            if m["event"] == "$feature_locked":
                locks[f"{m['properties']['feature']} ({m['properties']['reason']})"] += 1
            u = m.get("userId")
            if u:
                first[u].setdefault(m["event"], d)
                if m["event"] == "signed_up":
                    signups[u] = d
                    channel_of_user[u] = m["properties"]["channel"]
                if m["event"] == "session_started":
                    active[u].add(d)
    end = params.start.toordinal() + params.days

    def retained(day: int) -> str:
        base = [u for u, d in signups.items() if end - d.toordinal() > day]
        kept = [u for u in base if any((x - signups[u]).days == day for x in active[u])]
        return f"{len(kept) / max(1, len(base)):.1%}"

    activated = [
        u
        for u, d in signups.items()
        if all(
            e in first[u] and (first[u][e] - d).days <= 7
            for e in ("project_created", "teammate_invited")
        )
    ]
    print(f"events                      {n:,} ({time.perf_counter() - t0:.0f} s to generate)")
    print(f"visitors (anonymous ids)    {len(visitors):,}")
    print(
        f"sign-ups                    {len(signups):,} ({len(signups) / len(visitors):.1%} of visitors)"
    )
    by_channel = collections.Counter(channel_of_user.values())
    print(
        "sign-ups by channel         " + ", ".join(f"{c} {k}" for c, k in by_channel.most_common())
    )
    for step in ONBOARDING_STEPS:
        got = sum(1 for u in signups if step in first[u])
        print(f"  onboarding {step:<22} {got / len(signups):.1%} of sign-ups")
    print(f"activated (project + invite within 7 days)  {len(activated) / len(signups):.1%}")
    print(
        f"D1 / D7 / D30 retention (session on that day)  {retained(1)} / {retained(7)} / {retained(30)}"
    )
    intents = collections.Counter(i.action for i in world.product.intents)
    print(
        f"purchases                   {world.stats.paid:,} accounts ({world.stats.paid / max(1, intents['trial']):.1%} of {intents['trial']:,} trials); "
        f"checkouts {intents['checkout']:,}, seat changes {intents['seats']:,}, downgrades {intents['downgrade']:,}, cancellations {intents['cancel']:,}"
    )
    print("walls (feature_locked)      " + ", ".join(f"{k} {n:,}" for k, n in locks.most_common()))
    print(
        f"referral shares             {names['referral_link_shared']:,}; reactivations {names['reactivated']:,}"
    )


if __name__ == "__main__":
    main()
