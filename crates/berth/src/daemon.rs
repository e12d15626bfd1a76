//! `berth engine`: wires the engine core to the Docker Engine API server.
