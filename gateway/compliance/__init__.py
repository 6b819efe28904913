"""Request-time compliance: sanctioned regions (451), AUP enforcement (400), reseller disclosure,
audit log, and the ``newapi compliance-check`` smoke test.

Modules, one job each:

* :mod:`.geo`: the geo policy compiled per routing table, location resolution from trusted ingress
  headers or a GeoIP database, and the pure ``decide``;
* :mod:`.geoip`: the MaxMind-format database reader (the only I/O of geo resolution);
* :mod:`.aup_policy`: the AUP policy file format and the shipped policies (``policies/<provider>/aup.yaml``);
* :mod:`.extract`: the text of a request body that the AUP check reads;
* :mod:`.aup`: the policy sets per enforcement mode, compiled into matchers, and the check;
* :mod:`.disclosure`: the ``/legal/llm-providers`` page (HTML and JSON);
* :mod:`.errors`: the 451 and 400 bodies in OpenAI and Anthropic shapes;
* :mod:`.plan`: all of the above compiled for one routing table;
* :mod:`.pipeline`: the checks as hooks of the gateway pipeline (:mod:`newapi_gateway.hooks`);
* :mod:`.audit_row`, :mod:`.audit_text`: one audit row per request and its prompt/completion text (pure);
* :mod:`.audit`, :mod:`.audit_writer`, :mod:`.audit_retention`: the audit log's hooks, batched writes and
  retention job;
* :mod:`.summary`, :mod:`.retention_probe`, :mod:`.admin_api`: the admin API's compliance summary and
  BYOK retention probe;
* :mod:`.runtime`: the whole plane wired into one gateway process;
* :mod:`.check`, :mod:`.check_command`: ``newapi compliance-check``.

docs/compliance.md is the reference.
"""
