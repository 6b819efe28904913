"""Kubernetes Events (core v1) for people reading ``kubectl describe``: posted on transitions only."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from . import constants as c
from .kube import ApiError, KubeClient

log = logging.getLogger("newapi_operator.controller.events")

#: The API server rejects longer Event messages.
MAX_MESSAGE = 1024


def event_body(involved: Mapping[str, Any], type_: str, reason: str, message: str, instance: str) -> dict[str, Any]:
    """A core v1 Event about ``involved`` (an object with apiVersion, kind and metadata)."""
    meta = involved.get("metadata") or {}
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": meta.get("namespace") or "default"},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "action": "Reconcile",
        "source": {"component": c.COMPONENT},
        "reportingComponent": c.COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "count": 1,
    }


class EventRecorder:
    """Posts Events; a failure to post is logged, never raised (Events are best effort)."""

    def __init__(self, client: KubeClient, instance: str) -> None:
        self.client = client
        self.instance = instance
        self.posted = 0

    async def post(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        body = event_body(involved, type_, reason, message, self.instance)
        try:
            await self.client.create(body)
            self.posted += 1
        except ApiError as err:
            log.warning("could not post an Event", extra={"reason": reason, "error": str(err)})

    async def normal(self, involved: Mapping[str, Any], reason: str, message: str) -> None:
        await self.post(involved, "Normal", reason, message)

    async def warning(self, involved: Mapping[str, Any], reason: str, message: str) -> None:
        await self.post(involved, "Warning", reason, message)
