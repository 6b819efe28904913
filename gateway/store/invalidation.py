"""Cross-replica cache invalidation over Redis pub/sub.

Every replica subscribes to one channel; a key change (revoke, suspend, rotate, settings) is
published after its database commit, and every subscriber drops the key from its cache at once.
Pub/sub is fire-and-forget: while a replica is not subscribed it may miss messages, so on every
(re)subscription the whole cache is cleared, and the cache TTL (1 s) bounds staleness anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class RedisInvalidationBus:
    """Publishes invalidation messages and feeds received ones to ``on_message``.

    ``on_reset`` is called whenever messages may have been missed (connect, reconnect, outage).
    """

    def __init__(
        self,
        redis_url: str,
        channel: str,
        on_message: Callable[[str], None],
        on_reset: Callable[[], None],
        *,
        timeout: float = 2.0,
    ) -> None:
        self.channel = channel
        self._on_message = on_message
        self._on_reset = on_reset
        common: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 1),
            "decode_responses": True,
        }
        self._pub = aioredis.Redis.from_url(redis_url, socket_timeout=timeout, **common)
        # The subscriber blocks on reads for as long as nothing is published: no read timeout,
        # but a PING every few seconds notices a dead connection.
        self._sub = aioredis.Redis.from_url(redis_url, socket_timeout=None, health_check_interval=5, **common)
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.healthy = False
        self.last_error: str | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen(), name="key-invalidation")

    async def wait_subscribed(self) -> None:
        """Wait until the subscription is live (callers bound this with ``asyncio.timeout``)."""
        await self._subscribed.wait()

    async def _listen(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self._sub.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._on_reset()
                self.healthy = True
                self.last_error = None
                self._subscribed.set()
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None and message.get("type") == "message":
                        self._on_message(str(message["data"]))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.healthy:
                    log.warning("key invalidation channel lost (%s); cache TTL bounds staleness until it is back", exc)
                self.healthy = False
                self.last_error = str(exc) or type(exc).__name__
                self._subscribed.clear()
                self._on_reset()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def publish(self, message: str) -> bool:
        """Publish; False (logged) when Redis is unreachable — the cache TTL still bounds staleness."""
        try:
            await self._pub.publish(self.channel, message)
        except (RedisError, OSError) as exc:
            log.warning("could not publish key invalidation %r: %s", message, exc)
            self.last_error = str(exc) or type(exc).__name__
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._pub.aclose()
        with contextlib.suppress(Exception):
            await self._sub.aclose()
