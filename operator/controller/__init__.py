"""The operator: reconciles NewAPIInstance, Channel and CustomerKey objects (Kopf). See docs/operator.md.

Pure logic (no I/O, unit-tested directly):

- :mod:`.constants`: names, labels, annotations, ports shared by every part;
- :mod:`.selectors`: label-selector matching;
- :mod:`.conditions`: status conditions with transition times, and their transitions (Events);
- :mod:`.binding`: which Channels an instance binds, which it excludes and why;
- :mod:`.routes`: the routing table (ConfigMap ``<name>-routes``, plain or gzip) and upstream credentials;
- :mod:`.children`: every child object of an instance (ServiceAccount ... ExternalSecret);
- :mod:`.compare`: does a live object already hold what we want (only the fields we own)?;
- :mod:`.channel_status`, :mod:`.instance_status`: status documents of Channels and instances;
- :mod:`.keys`: CustomerKey material, its Secret, attribute sync and status;
- :mod:`.webhook`: the admission rules (the reconcilers' rules, before an object is stored).

I/O at the edges:

- :mod:`.kube`: a small async Kubernetes REST client (kubeconfig or in-cluster);
- :mod:`.applier`: read + compare + server-side apply of children (no spurious writes);
- :mod:`.events`: Kubernetes Events on transitions;
- :mod:`.adminapi`: the gateway's admin API client (httpx);
- :mod:`.workqueue`: per-object coalescing work queue with backoff;
- :mod:`.runtime`: configuration, caches, Kopf indexes and queues of one operator process;
- :mod:`.reconcile_instance`, :mod:`.reconcile_channel`, :mod:`.reconcile_customerkey`: the reconcilers;
- :mod:`.handlers`: the Kopf registry (watches, indexes, finalizer, timer, webhook);
- :mod:`.options`, :mod:`.runner`, :mod:`.logs`: ``newapi operator`` (flags, Kopf settings, JSON logs).
"""
