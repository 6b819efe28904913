"""``newapi dev``: the whole product on one machine, with no cluster and no database installed.

One foreground command starts, in this order: the local Kubernetes API server (in-process, with
the product's CRDs, its objects kept in ``<state-dir>`` between runs), a demo upstream (a child
process answering in the OpenAI and Anthropic wire formats), the real operator (a child process,
``newapi operator --standalone`` against the local API server) and a local *launcher* that plays
the kubelet: it watches the gateway Deployments the operator renders and runs one real
``newapi gateway`` process per Deployment, reading the same routing ConfigMap and Secret through
the API as a pod would. It then applies ``config/samples/`` and prints the URLs and the sample
key. Ctrl-C stops every child process and keeps the state.

Modules, one job each:

* :mod:`.options`: the command-line options (no heavy imports);
* :mod:`.config`: the resolved settings and the dev port map (pure);
* :mod:`.ports`: "is this port free?" before anything starts;
* :mod:`.manifests`: reading the YAML to apply and the dev/demo overlays (pure);
* :mod:`.kube`: a small async client of the local API server (discovery, apply, status);
* :mod:`.persist`: the API server's objects saved to and restored from the state directory;
* :mod:`.podspec`: a Deployment's pod template turned into a local process plan (pure);
* :mod:`.processes`: child processes in their own process groups, stopped SIGTERM-then-SIGKILL;
* :mod:`.launcher`: the Deployment watch, the gateway processes, readiness and Deployment status;
* :mod:`.adminrouter`: one address at which the operator reaches every gateway's admin API;
* :mod:`.orchestrator`: the command itself.
"""
