"""What browser SDKs load before they send anything, in their vendors' formats.

analytics.js asks Segment's CDN for its project settings; posthog-js asks PostHog for a
remote config and for flags. Pointed at Traction, both ask us, and every field here is
chosen so the SDK talks to Traction alone: no usage metrics sent to Segment, no session
recording, surveys or site apps loaded from elsewhere. Pure functions: the routes in
`api.py` authenticate the key and serialise.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson


def segment_settings(write_key: str, workspace_id: str, host: str, scheme: str) -> dict[str, Any]:
    """analytics-next's `/v1/projects/{writeKey}/settings`. `metrics.sampleRate: 0` stops its
    30-second usage report to Segment's API (it would otherwise leave the customer's page
    for a third party); `host` points it here should a client override the rate."""
    return {
        "integrations": {
            "Segment.io": {"apiKey": write_key, "apiHost": f"{host}/v1", "protocol": scheme}
        },
        "plan": {"track": {}, "identify": {}, "group": {}},
        "metrics": {"sampleRate": 0, "host": f"{host}/v1"},
        "remotePlugins": [],
        "enabledMiddleware": {},
        "legacyVideoPluginsEnabled": False,
        "workspace": workspace_id,
    }


def posthog_remote_config(token: str) -> dict[str, Any]:
    """posthog-js's `/array/{token}/config`: capture on, every feature Traction does not
    serve yet (recording, surveys, heatmaps, site apps, exception capture) off, so the SDK
    loads no extra scripts and posts nowhere but the capture endpoints. Checked against the
    real posthog-js in Chromium (tests/test_browser_sdks.py)."""
    return {
        "token": token,
        "supportedCompression": ["gzip", "gzip-js"],
        "analytics": {"endpoint": "/i/v0/e/"},
        "autocapture_opt_out": False,
        "autocaptureExceptions": False,
        "errorTracking": {"autocaptureExceptions": False},
        "capturePerformance": False,
        "captureDeadClicks": False,
        "heatmaps": False,
        "sessionRecording": False,
        # No `surveys` key: posthog-js loads its surveys script on `false` too, and only
        # skips it when the key is missing.
        "elementsChainAsString": True,
        "siteApps": [],
        "toolbarParams": {},
        "isAuthenticated": False,
    }


def posthog_remote_config_js(token: str) -> str:
    """The script form (`config.js`): it registers the same config on the page."""
    config = orjson.dumps({"config": posthog_remote_config(token), "siteApps": []}).decode()
    # orjson leaves "</script>" alone; escape "<" so the script is inert in any context.
    config = config.replace("<", "\\u003c")
    key = orjson.dumps(token).decode().replace("<", "\\u003c")
    return (
        "(function(){var w=window;w._POSTHOG_REMOTE_CONFIG=w._POSTHOG_REMOTE_CONFIG||{};"
        f"w._POSTHOG_REMOTE_CONFIG[{key}]={config};}})();\n"
    )


def posthog_flags(flags: dict[str, bool | str] | None = None) -> dict[str, Any]:
    """The answer of `/flags/` and of the older `/decide/`, in both shapes at once: `flags`
    (v2: one detail object per flag) and `featureFlags` (v1: key -> value), so every
    posthog-js version reads it. Traction's own flags are evaluated by the flags capability
    and passed in; until then the answer holds none."""
    flags = flags or {}
    return {
        "flags": {
            key: {
                "key": key,
                "enabled": value is not False,
                "variant": value if isinstance(value, str) else None,
                "reason": {"code": "traction", "description": "evaluated by Traction"},
                "metadata": {"id": None, "version": None, "payload": None},
            }
            for key, value in flags.items()
        },
        "featureFlags": dict(flags),
        "featureFlagPayloads": {},
        "errorsWhileComputingFlags": False,
        "requestId": str(uuid.uuid4()),
        "quotaLimited": [],
        "sessionRecording": False,
        "supportedCompression": ["gzip", "gzip-js"],
        "config": {"enable_collect_everything": True},
        "toolbarParams": {},
        "isAuthenticated": False,
        "siteApps": [],
    }
