"""Request-time compliance: sanctioned regions (451), AUP enforcement (400), reseller disclosure.

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
* :mod:`.pipeline`: the checks as hooks of the gateway pipeline (:mod:`newapi_gateway.hooks`).

docs/compliance.md is the reference.
"""
