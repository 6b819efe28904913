"""Operator logs: one JSON object per line on stderr (or plain text), Kopf's records included."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
#: Extras Kopf attaches to its records that are not worth a log line (the whole settings object).
_DROPPED = {"settings"}


class AdmissionDenialFilter(logging.Filter):
    """Kopf logs a webhook's denial as an error ("failed permanently"); it is a normal answer: INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "kopf.objects" and record.levelno >= logging.ERROR:
            text = str(record.msg)
            if text.startswith("Webhook ") and "failed permanently" in text:
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra}``; Kopf's object reference as ``object``."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key == "k8s_ref" and isinstance(value, dict):
                doc["object"] = {k: value.get(k) for k in ("kind", "namespace", "name") if value.get(k)}
            elif key not in _STANDARD and key not in _DROPPED and not key.startswith(("_", "k8s_")):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(fmt: str = "json", level: str = "info") -> None:
    """Configure the root logger; quiets Kopf's per-event chatter below WARNING unless debugging."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(AdmissionDenialFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if level.lower() != "debug":
        for noisy in ("kopf.objects", "httpx", "aiohttp.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
