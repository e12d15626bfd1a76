//! Layer application (tar, gzip, whiteouts, safe paths) and overlay snapshots per layer chain.
