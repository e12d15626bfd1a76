//! Image references, digests, content store, image store (tags) and import.
