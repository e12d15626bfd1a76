//! Linux control groups (v1, v2 and hybrid hosts): create, limit, join, stat and remove a cgroup. Knows nothing of containers.
