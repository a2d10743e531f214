"""The simulated product's flags and experiments: an onboarding checklist test with a known
true effect, an A/A test, and a plan-gated flag. The simulated people are bucketed by the
same evaluator the SDK runs (`flags.domain.evaluate`) on the payload these flags make, and
log exposures as the SDK does; the demo applies the same flags and experiment definitions,
so its Experiments results must find the effect that was put in (and nothing in the A/A).
"""

from __future__ import annotations

from typing import Any

from traction.flags.domain.evaluate import Context, Evaluator, FeatureResult
from traction.flags.domain.flags import parse_flag, payload_feature

ONBOARDING = "onboarding-checklist"
AA = "aa-welcome-copy"
EDITOR = "new-report-editor"  # a flag turned on by a safe rollout (EDITOR_ROLLOUT)

FLAGS: dict[str, dict[str, Any]] = {
    ONBOARDING: {
        "value_type": "string", "default_value": "classic",
        "description": "the onboarding checklist: the classic list or a guided one",
        "tags": ["onboarding", "experiment"],
        "environments": {"production": {"rules": [
            {"key": ONBOARDING, "variations": ["classic", "guided"], "weights": [0.5, 0.5],
             "hashAttribute": "id", "hashVersion": 2, "seed": ONBOARDING,
             "meta": [{"key": "classic"}, {"key": "guided"}]}]}},
    },
    AA: {
        "value_type": "string", "default_value": "hello",
        "description": "an A/A test: two identical welcome texts (checks the pipeline finds nothing)",
        "tags": ["experiment"],
        "environments": {"production": {"rules": [
            {"key": AA, "variations": ["hello", "hello"], "weights": [0.5, 0.5],
             "hashAttribute": "id", "hashVersion": 2, "seed": AA,
             "meta": [{"key": "a"}, {"key": "b"}]}]}},
    },
    EDITOR: {
        "value_type": "boolean", "default_value": False,
        "description": "the new report editor: turned on by a safe rollout, which watches errors",
        "tags": ["rollout"],
        "environments": {"production": {"rules": []}},
    },
    "sso-settings": {
        "value_type": "boolean", "default_value": False,
        "description": "the SSO settings panel: paying accounts only",
        "environments": {"production": {"rules": [
            {"condition": {"plan": {"$in": ["pro", "business"]}, "subscription_status": "active"},
             "force": True}]}},
    },
}  # fmt: skip

# The experiment definitions: the primary metric of the onboarding test is the onboarding
# step the guided checklist acts on (inviting a teammate during onboarding), within 7 days.
INVITED = {"key": "onboarding_invite", "name": "Invited a teammate during onboarding",
           "kind": "conversion", "window_days": 7,
           "event": {"event": "teammate_invited", "filters": [{"property": "onboarding", "operator": "equals", "value": True}]}}  # fmt: skip
EXPERIMENTS: dict[str, dict[str, Any]] = {
    ONBOARDING: {
        "hypothesis": "a guided checklist gets more new users to invite a teammate",
        "variations": [{"key": "classic", "weight": 0.5}, {"key": "guided", "weight": 0.5}],
        "primary": [INVITED],
        "secondary": [{"key": "project", "kind": "conversion", "event": {"event": "project_created"}, "window_days": 7}],
        "minimum_lift": 0.1,
    },
    AA: {
        "hypothesis": "nothing: both variations are the same",
        "variations": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.5}],
        "primary": [INVITED],
        "minimum_lift": 0.1,
    },
}  # fmt: skip


def evaluator() -> Evaluator:
    """The production payload of the simulated product's flags."""
    features = {}
    for key, doc in FLAGS.items():
        feature = payload_feature(parse_flag(doc), "production")
        if feature is not None:
            features[key] = feature
    return Evaluator({"features": features})


def evaluate(ev: Evaluator, key: str, user: str, **attrs: Any) -> FeatureResult:
    return ev.evaluate(key, Context(attributes={"id": user, **attrs}))


# The safe rollout the runner starts during the simulation (it must start at a simulated time,
# so it is not among EXPERIMENTS): the new editor shows more errors, and the guardrail on
# errors within a day of exposure should catch it and roll it back.
EDITOR_ROLLOUT_KEY = "report-editor-rollout"
EDITOR_ROLLOUT: dict[str, Any] = {
    "hypothesis": "the new report editor does not cause more errors",
    "guardrails": [{"key": "editor_errors", "name": "Errors in the report editor", "kind": "count",
                    "event": {"event": "error_shown"}, "window_days": 1, "direction": "down"}],
    "rollout": {"flag": EDITOR, "value": True,
                "steps": [{"percent": 10, "hours": 72}, {"percent": 30, "hours": 72},
                          {"percent": 60, "hours": 72}, {"percent": 100}]},
}  # fmt: skip
