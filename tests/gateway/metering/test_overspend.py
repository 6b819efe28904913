"""200 concurrent requests on one key never overspend: both back ends, asyncio ``openai`` clients
against the real gateway process. The credit covers a handful of requests; every admitted request
costs almost its whole hold, so any race between authorizations would drive the balance far
below zero."""

from __future__ import annotations

import asyncio

import httpx
import openai

from .metered import PAID_MODEL, Admin, MeteredGateway, poll

CONCURRENCY = 200
MAX_TOKENS = 100
# The demo replies with exactly max_tokens words here: cost = prompt words + 2 x 100.
CONTENT = f"[[demo:tokens={MAX_TOKENS}]] spend it all"


async def _one(api: openai.AsyncOpenAI) -> str:
    try:
        await api.chat.completions.create(model=PAID_MODEL, messages=[{"role": "user", "content": CONTENT}],
                                          max_tokens=MAX_TOKENS)
    except openai.RateLimitError as err:
        return str(err.code)
    return "ok"


def test_balance_never_negative_beyond_one_hold(gateway: MeteredGateway, admin: Admin, customer: str) -> None:
    hold = 3 + 4 + 2 + 10 + 2 * MAX_TOKENS  # priming + message + role + content estimate + output; ~ upper bound
    credit = 5 * hold
    key, _ = admin.signup(customer, credit=credit)

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=60,
                                      http_client=openai.DefaultAsyncHttpxClient(limits=limits)) as api:
            return await asyncio.gather(*(_one(api) for _ in range(CONCURRENCY)))

    outcomes = asyncio.run(run())
    served = outcomes.count("ok")
    refused = outcomes.count("insufficient_quota")
    assert served + refused == CONCURRENCY, outcomes
    assert served >= 1, outcomes
    assert refused >= 1, f"served {served}, refused {refused}: the credit was not contested"
    debits = poll(lambda: (d := admin.debits(customer)) and len(d) == served and d, what="every debit settled")
    balance = poll(lambda: (b := admin.balance(customer)) and b["held"] == 0 and b, what="no open holds")
    charged = -sum(d["amount"] for d in debits)
    assert balance["balance"] == credit - charged  # the ledger and the balance agree
    assert balance["balance"] >= -hold, f"overspent: balance {balance['balance']} after {served} requests"
    assert served <= credit // (2 * MAX_TOKENS) + 1
