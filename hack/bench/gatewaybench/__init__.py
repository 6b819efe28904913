"""Parts of the gateway benchmark (hack/bench/run.py): scenarios, wrk, the sequential client, report."""
