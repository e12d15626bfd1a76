//! berth's OCI runtime: creates, starts, signals, execs into and deletes containers from an OCI bundle. Synchronous; never runs on a multi-threaded caller.
