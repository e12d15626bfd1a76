//! Containers and images behind the Docker Engine API: records, OCI spec generation, shims, live restore. Never imports Kubernetes types.
