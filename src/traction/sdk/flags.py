"""Flags in the Python client: local evaluation from the environment's payload.

`Flags(client_key, host)` fetches `GET /api/features/{client_key}` (GrowthBook's format; the
same payload any GrowthBook SDK reads), compiles it once, and evaluates in-process: no request
per evaluation. A background thread refetches every `refresh_seconds`; if the server cannot
be reached the last payload keeps serving. An evaluation never raises into the host: it
answers the default with a reason and an error code (OpenFeature's vocabulary).

Exposures: with a `tracker` (a `Client` holding a write key), every evaluation that puts a
person in an experiment sends `$experiment_viewed` (Segment's "Experiment Viewed":
`experiment_id`, `variation_id`, ...) once per person and experiment per session (30 minutes
without seeing it), batched with the client's other events.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from traction.flags.domain.crypto import DecryptError, decrypt
from traction.flags.domain.evaluate import Context, Evaluator, FeatureResult

if TYPE_CHECKING:
    from traction.sdk.client import Client

log = logging.getLogger("traction.sdk")

# FeatureResult.source -> OpenFeature's reason
REASONS = {
    "defaultValue": "DEFAULT",
    "force": "TARGETING_MATCH",
    "experiment": "SPLIT",
    "prerequisite": "DISABLED",
    "cyclicPrerequisite": "ERROR",
    "unknownFeature": "ERROR",
}


@dataclass(frozen=True)
class Evaluation:
    value: Any
    reason: str  # DEFAULT | TARGETING_MATCH | SPLIT | DISABLED | ERROR
    variant: str | None = None  # the rule or variation that gave the value
    error_code: str | None = None  # FLAG_NOT_FOUND | PROVIDER_NOT_READY | TYPE_MISMATCH | GENERAL
    error_message: str | None = None
    experiment: str | None = None
    variation_id: int | None = None


class Flags:
    def __init__(
        self,
        client_key: str,
        host: str = "http://127.0.0.1:8000",
        *,
        refresh_seconds: float = 30.0,
        decryption_key: str | None = None,
        tracker: Client | None = None,
        session_seconds: float = 1800.0,
        timeout: float = 5.0,
        http: httpx.Client | None = None,
        background: bool = True,
    ) -> None:
        self.client_key = client_key
        self.refresh_seconds = refresh_seconds
        self.decryption_key = decryption_key
        self.tracker = tracker
        self.session_seconds = session_seconds
        self._http = http or httpx.Client(base_url=host.rstrip("/"), timeout=timeout)
        self._evaluator: Evaluator | None = None
        self._updated: str | None = None
        self._seen: dict[tuple[str, str], float] = {}  # (person, experiment) -> last exposure
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.refresh()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._loop, name="traction-flags", daemon=True)
            self._thread.start()

    # -- the payload ------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Fetches the payload now; False (and the old one kept) when that fails."""
        try:
            r = self._http.get(f"/api/features/{self.client_key}")
            r.raise_for_status()
            body = r.json()
            if "encryptedFeatures" in body:
                if not self.decryption_key:
                    raise DecryptError("the payload is encrypted: pass decryption_key")
                body["features"] = json.loads(
                    decrypt(body["encryptedFeatures"], self.decryption_key)
                )
                if "encryptedSavedGroups" in body:
                    body["savedGroups"] = json.loads(
                        decrypt(body["encryptedSavedGroups"], self.decryption_key)
                    )
            if body.get("dateUpdated") == self._updated and self._evaluator is not None:
                return True
            evaluator = Evaluator(body)
        except (httpx.HTTPError, ValueError, TypeError, KeyError) as e:
            log.warning(
                "traction flags: could not refresh the payload (%s); keeping the last one", e
            )
            return False
        with self._lock:
            self._evaluator, self._updated = evaluator, body.get("dateUpdated")
        return True

    @property
    def ready(self) -> bool:
        return self._evaluator is not None

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.refresh()

    def close(self) -> None:
        self._stop.set()

    # -- evaluating ----------------------------------------------------------------------------

    def evaluate(
        self, key: str, attributes: Mapping[str, Any] | None = None, default: Any = None
    ) -> Evaluation:
        """The flag's value for these attributes, with why. Never raises."""
        evaluator = self._evaluator
        if evaluator is None:
            return Evaluation(default, "ERROR", error_code="PROVIDER_NOT_READY",
                              error_message="no payload yet: the server could not be reached")  # fmt: skip
        try:
            res = evaluator.evaluate(key, Context(attributes=dict(attributes or {})))
        except Exception as e:  # never into the host application
            log.exception("traction flags: evaluating %s failed", key)
            return Evaluation(default, "ERROR", error_code="GENERAL", error_message=str(e))
        if res.source == "unknownFeature":
            return Evaluation(
                default, "ERROR", error_code="FLAG_NOT_FOUND", error_message=f"no flag {key!r}"
            )
        if res.source == "cyclicPrerequisite":
            return Evaluation(
                default, "ERROR", error_code="GENERAL", error_message="cyclic prerequisites"
            )
        self._expose(res, attributes or {})
        value = default if res.value is None else res.value
        er = res.experiment_result
        return Evaluation(
            value, REASONS[res.source], variant=er.key if er is not None else (res.rule_id or None),
            experiment=res.experiment.get("key") if res.experiment else None,
            variation_id=er.variation_id if er is not None else None,
        )  # fmt: skip

    def value(
        self, key: str, attributes: Mapping[str, Any] | None = None, default: Any = None
    ) -> Any:
        return self.evaluate(key, attributes, default).value

    def is_on(self, key: str, attributes: Mapping[str, Any] | None = None) -> bool:
        return bool(self.evaluate(key, attributes, False).value)

    def _expose(self, res: FeatureResult, attributes: Mapping[str, Any]) -> None:
        props = exposure(res)
        er = res.experiment_result
        if self.tracker is None or props is None or er is None:
            return
        person, exp_key = str(er.hash_value), props["experiment_id"]
        now = time.monotonic()
        with self._lock:
            last = self._seen.get((person, exp_key))
            self._seen[(person, exp_key)] = now
            if len(self._seen) > 200_000:
                self._seen.clear()
        if last is not None and now - last < self.session_seconds:
            return
        user = attributes.get("id")
        ids = {"user_id": str(user)} if user else {"anonymous_id": person}
        try:
            self.tracker.track(event="$experiment_viewed", properties=props, **ids)
        except Exception:  # a full queue or a closed client must not break the evaluation
            log.warning("traction flags: could not log an exposure to %s", exp_key)


def exposure(res: FeatureResult) -> dict[str, Any] | None:
    """`$experiment_viewed`'s properties for an evaluation that put someone in an experiment
    (None otherwise): Segment's "Experiment Viewed" fields, and the flag."""
    er = res.experiment_result
    if er is None or not er.in_experiment or not er.hash_used or res.experiment is None:
        return None
    key = str(res.experiment.get("key", ""))
    return {"experiment_id": key, "experiment_name": res.experiment.get("name") or key,
            "variation_id": er.variation_id, "variation_name": er.name or er.key,
            "hash_attribute": er.hash_attribute, "feature": er.feature_id}  # fmt: skip
