//! The Docker Engine API (v1.44) served over a unix socket with axum/hyper.
