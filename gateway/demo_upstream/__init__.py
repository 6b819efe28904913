"""Demo LLM upstream: a stand-in for OpenAI-compatible/vLLM and Anthropic upstreams.

**It is a demo, not a model.** It answers deterministically from the prompt, speaking the
providers' real wire formats, so the gateway can be tested, benchmarked and demonstrated
(``newapi dev``) with no internet and no GPU. Run it::

    python -m newapi_gateway.demo_upstream --port 8099 [--host 127.0.0.1] [--name a]
        [--api-key KEY ...] [--models m1,m2] [--record 1000] [--behavior SPEC]

It prints ``demo-upstream NAME listening on http://HOST:PORT`` when ready (``--port 0`` picks a
free port). Python API: :class:`DemoUpstream` (in-process), :class:`DemoUpstreamProcess` (child
process) and :class:`DemoUpstreamControl` (control client).

Endpoints (chosen by path suffix, any prefix: ``/v1/...`` or ``/chan-a/v1/...``)
---------------------------------------------------------------------------------
OpenAI: ``POST …/chat/completions``, ``POST …/completions``, ``POST …/embeddings``,
``GET …/models``. Anthropic: ``POST …/v1/messages``, ``POST …/v1/messages/count_tokens``,
``GET …/v1/models`` with an ``anthropic-version`` header. Streams (``"stream": true``) are SSE:
OpenAI ``data: {chunk}`` … ``data: [DONE]``, with the usage chunk (empty ``choices``) only when
``stream_options.include_usage`` is true; Anthropic ``event: NAME`` / ``data: {json}`` events
``message_start``, ``content_block_start``, ``ping``, ``content_block_delta``,
``content_block_stop``, ``message_delta``, ``message_stop``.

Authentication: with ``--api-key`` set, OpenAI endpoints require ``Authorization: Bearer KEY``
(else 401 ``invalid_api_key``) and Anthropic ones ``x-api-key: KEY`` (else 401
``authentication_error``). Anthropic endpoints always require ``anthropic-version``
(``2023-06-01``) like the real API (400 otherwise). With ``--models``, other models get 404
(``model_not_found`` / ``not_found_error``).

Content and token counting (exact, for assertions; see :mod:`.content`)
------------------------------------------------------------------------
Tokens are whitespace-separated words. The reply is ``echo: <words of the last user message>``
(OpenAI: last ``user``/``tool`` message; markers removed); prompt tokens are the words of all
message texts and the system prompt. ``max_tokens`` smaller than the reply truncates it (stop
reason ``length`` / ``max_tokens``). Streams send one word per chunk. Tool calls: when the
request offers tools and either ``tool_choice`` forces one (``required``/named, ``any``/``tool``)
or the behaviour says ``tool`` (``[[demo:tool]]`` in the prompt), the model calls that tool
(``tool=*``: the first) with every declared parameter set to a deterministic value (string
``"demo"``, integer 1, number 1.5, boolean true, enum: first value). OpenAI answers with
``tool_calls`` only (``finish_reason: tool_calls``); Anthropic with the text block then a
``tool_use`` block (``stop_reason: tool_use``). Embeddings are deterministic unit vectors
(16 dimensions unless ``dimensions``; ``encoding_format: base64`` supported). Ids are
``chatcmpl-NAME-SEQ``, ``msg_NAME-SEQ``…; ``system_fingerprint`` is ``fp_NAME``; every answer
carries the ``x-demo-upstream: NAME`` header.

Behaviour (failures, delays, stream shapes; see :mod:`.behavior`)
-----------------------------------------------------------------
Fields: ``status=N`` (error in the endpoint's format, e.g. 429/500/503/529), ``message=TEXT``,
``retry_after=S`` (429/529 always send ``retry-after``, default 1), ``delay_ms`` (before the first
byte), ``chunk_delay_ms`` (between stream events), ``tokens=N`` (N lorem words = N content
chunks), ``disconnect_after=K`` (close the connection after K stream events), ``stall_after=K``
(stop sending after K events, keep the connection), ``error_after=K`` (in-stream error event after
K events), ``hang`` (never answer), ``drop`` (close without answering), ``usage=zero|omit``,
``tool[=NAME]``. Sources, later wins: ``--behavior`` < first matching server rule < prompt
marker ``[[demo:SPEC]]`` < ``x-demo-behavior: SPEC`` header. SPEC is ``k=v; k2=v2; flag`` or JSON.

Control API (no auth; JSON)
---------------------------
``GET /__demo/health``; ``GET /__demo/info``; ``GET /__demo/requests[?limit=N]`` (bounded log,
oldest first: seq, time, method, path, endpoint, headers incl. credentials, body, status,
behavior) and ``DELETE`` to clear; ``POST /__demo/behavior`` adds a rule (a JSON object or list of
objects with behaviour fields plus optional ``times`` (next K matching requests only),
``endpoint`` (chat, completions, embeddings, models, messages, count_tokens), ``model``,
``stream``; or a ``k=v; ...`` text), ``GET`` lists, ``DELETE`` clears; ``POST /__demo/reset``
forgets rules, the log and cached answers. The log holds credentials in memory: test use only.
"""

from .behavior import Behavior, BehaviorError
from .control import DemoUpstreamControl, DemoUpstreamError
from .process import DemoUpstreamProcess
from .server import DemoUpstream, DemoUpstreamConfig

__all__ = [
    "Behavior",
    "BehaviorError",
    "DemoUpstream",
    "DemoUpstreamConfig",
    "DemoUpstreamControl",
    "DemoUpstreamError",
    "DemoUpstreamProcess",
]
