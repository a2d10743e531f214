"""The journeys the simulated product runs (the three recipes of docs/engage.md), and how the
simulated people react to what they receive: each message has a parameterised effect, so the
demo's journeys page shows a measured lift where there is one, and none where there is none.

- `welcome`: a welcome email; if no teammate is invited within 48 h, a nudge, whose effect is
  `nudge_invite_rate` (the chance the person invites one the next day); goal: an onboarding
  invite within 7 days; 20% holdout.
- `winback`: no session for 14 days → a "we miss you" email, whose effect is
  `winback_return_rate` (0 by default: the null result the page should show); goal: a
  session within 14 days; 20% holdout.
- `upgrade-prompt`: a limit reached (`$feature_locked` with reason `limit_reached`, what the
  entitlement check records when a free plan's limit says no) → a random split between an in-app prompt (A) and an
  email (B), with effects `prompt_upgrade_a` / `prompt_upgrade_b` (the chance to buy Pro the
  next day); goal: an upgrade (`plan_upgraded`) within 7 days; 20% holdout.
"""

from __future__ import annotations

from typing import Any

JOURNEYS: dict[str, dict[str, Any]] = {
    "welcome": {
        "name": "Welcome and onboarding nudge",
        "trigger": {"event": "signed_up"},
        "goal": {"event": {"event": "teammate_invited"}, "within_days": 7},
        "holdout": 0.2,
        "steps": [
            {"id": "welcome", "type": "email", "email": {
                "subject": "Welcome to the product",
                "text": "Hi! Create a project, then invite a teammate: that is when it clicks."}},
            {"id": "wait", "type": "wait", "until_event": {"event": "teammate_invited"},
             "timeout_hours": 48, "on_event": "done", "on_timeout": "nudge"},
            {"id": "nudge", "type": "email", "email": {
                "subject": "Invite a teammate", "text": "Teams that invite someone in week one stay."}},
            {"id": "done", "type": "exit"},
        ],
    },
    "winback": {
        "name": "Inactivity win-back",
        "trigger": {"inactive": {"event": "session_started", "days": 14}},
        "entry": {"policy": "again", "after_days": 60},
        "goal": {"event": {"event": "session_started"}, "within_days": 14},
        "holdout": 0.2,
        "steps": [{"id": "miss-you", "type": "email", "email": {
            "subject": "We miss you", "text": "Here is what changed since your last visit."}}],
    },
    "upgrade-prompt": {
        "name": "Limit-hit upgrade prompt",
        "trigger": {"event": "$feature_locked",
                    "filters": [{"property": "reason", "value": "limit_reached"}]},
        "entry": {"policy": "again", "after_days": 30},
        "goal": {"event": {"event": "plan_upgraded"}, "within_days": 7},
        "holdout": 0.2,
        "steps": [
            {"id": "ab", "type": "split", "paths": [{"weight": 0.5, "next": "prompt-a"},
                                                    {"weight": 0.5, "next": "prompt-b"}]},
            {"id": "prompt-a", "type": "inapp", "next": "end", "inapp": {
                "kind": "modal", "title": "You have reached your plan's limit",
                "body": "Pro has unlimited projects.", "cta_text": "Upgrade", "cta_url": "/billing"}},
            {"id": "prompt-b", "type": "email", "email": {
                "subject": "You hit your plan's limit", "text": "Upgrade to Pro for unlimited projects."}},
            {"id": "end", "type": "exit"},
        ],
    },
}  # fmt: skip

# journey.step -> (what the message can make the person do, the parameter giving its chance)
EFFECTS: dict[str, tuple[str, str]] = {
    "welcome.nudge": ("invite", "nudge_invite_rate"),
    "winback.miss-you": ("return", "winback_return_rate"),
    "upgrade-prompt.prompt-a": ("upgrade", "prompt_upgrade_a"),
    "upgrade-prompt.prompt-b": ("upgrade", "prompt_upgrade_b"),
}


# Audiences the demo keeps (docs/segments.md): refreshed after the simulation and then by the
# server's maintenance loop, so the Segments page has members and each change is an event.
SEGMENTS: dict[str, dict[str, Any]] = {
    "power-users": {
        "name": "Power users",
        "description": "Ten sessions or more in the last 30 days.",
        "performed": [{"event": {"event": "session_started"}, "at_least": 10, "within_days": 30}],
    },
    "drifting": {
        "name": "Drifting away",
        "description": "Came back in the last 60 days, but not in the last 14.",
        "performed": [
            {"event": {"event": "session_started"}, "at_least": 1, "within_days": 60},
            {"event": {"event": "session_started"}, "at_least": 0, "at_most": 0, "within_days": 14},
        ],
    },
}
