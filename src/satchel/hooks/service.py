"""Webhooks: events written to the outbox in the transaction of what they tell of (the
request that caused one waits only for that row), and sent from it by a loop in every
process: at least once, each try signed, failed ones again after a doubling wait, for
up to three days."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import aiohttp

from satchel.hooks.rules import Delivery, retry_after, signed_headers

log = logging.getLogger("satchel.hooks")

GIVE_UP = timedelta(days=3)
LEASE = timedelta(seconds=60)  # a claimed delivery is another's to try after this
TIMEOUT = 10.0  # seconds an endpoint has to answer
BATCH = 20  # deliveries claimed, and tried at once


class Outbox(Protocol):
    """Where deliveries wait (``metadata/hooks.py``; written by ``metadata/events.py`` in
    the transaction of what they tell of): claimed by one sender at a time."""

    async def claim(self, now: datetime, until: datetime, limit: int) -> Sequence[Delivery]: ...

    async def delivered(self, delivery_id: str) -> None: ...

    async def retry(self, delivery_id: str, tries: int, at: datetime, error: str) -> None: ...


class Hooks:
    """The sender: the key events are signed with, the outbox, and what this process
    sets when it has written an event (``EventOutbox.written``)."""

    def __init__(
        self, outbox: Outbox, key: bytes, written: asyncio.Event, first_retry: float = 10.0
    ) -> None:
        self.outbox = outbox
        self.key = key
        self.first_retry = first_retry
        self._wake = written

    async def run(self) -> None:
        """Send what is due, until cancelled; between rounds, wait a second or for an
        event of this process."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http:
            while True:
                try:
                    sent = await self._round(http)
                except Exception:
                    log.exception("Sending webhooks failed; trying again in 1 s")
                    sent = 0
                if sent < BATCH:
                    self._wake.clear()
                    # not wait_for: on 3.11 a cancel that comes with the event is lost
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await self._wake.wait()

    async def _round(self, http: aiohttp.ClientSession) -> int:
        now = datetime.now(UTC)
        due = await self.outbox.claim(now, now + LEASE, BATCH)
        await asyncio.gather(*(self._try(http, delivery) for delivery in due))
        return len(due)

    async def _try(self, http: aiohttp.ClientSession, delivery: Delivery) -> None:
        body = delivery.body.encode()
        headers = signed_headers(self.key, delivery.id, body, time.time())
        headers["Content-Type"] = "application/json"
        try:
            async with http.post(delivery.url, data=body, headers=headers) as answer:
                status = answer.status
                await answer.read()
            error = "" if 200 <= status < 300 else f"HTTP {status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if not error:
            await self.outbox.delivered(delivery.id)
            return
        tries = delivery.tries + 1
        now = datetime.now(UTC)
        if now - delivery.created_at > GIVE_UP:
            await self.outbox.delivered(delivery.id)  # out of the outbox: given up
            log.error("Webhook %s to %s given up after %d tries: %s",
                      delivery.id, delivery.url, tries, error)  # fmt: skip
            return
        wait = retry_after(tries, self.first_retry)
        log.warning("Webhook %s to %s failed (%s); try %d in %g s",
                    delivery.id, delivery.url, error, tries + 1, wait)  # fmt: skip
        await self.outbox.retry(delivery.id, tries, now + timedelta(seconds=wait), error)
