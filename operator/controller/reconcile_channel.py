"""Reconcile one Channel's status: ``Attested``, ``Valid``, ``Ready`` (written only when changed)."""

from __future__ import annotations

import logging

from newapi_operator.api.v1alpha1 import API_VERSION

from .binding import ChannelInput, evaluate_channel
from .channel_status import channel_status
from .conditions import transitions
from .runtime import Runtime

log = logging.getLogger("newapi_operator.controller.channel")

KIND = "Channel"


async def reconcile_channel(rt: Runtime, namespace: str, name: str) -> None:
    body = await rt.client.get(API_VERSION, KIND, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return
    meta = body["metadata"]
    ch = ChannelInput.from_body(body)
    ref = ch.spec.get("secretRef")
    names = [ref["name"]] if isinstance(ref, dict) and ref.get("name") else []
    verdict = evaluate_channel(ch, await rt.secrets.get_many(namespace, names))
    current = dict(body.get("status") or {})
    status = channel_status(verdict, meta.get("generation"), current)
    if status == {k: current.get(k) for k in status}:
        return
    patch = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
    result = await rt.client.merge_patch(API_VERSION, KIND, namespace, name, patch, "status")
    rt.note_status_write(KIND, namespace, name, result)
    log.info("channel status updated", extra={"namespace": namespace, "channel": name,
                                              "ready": status["conditions"][-1]["status"]})
    for t in transitions(current.get("conditions"), status["conditions"]):
        text = f"{t.type}={t.status} ({t.reason}): {t.message}"
        await rt.events.post(result, "Normal" if t.status == "True" else "Warning", t.reason, text)
