//! Seccomp: Docker's default profile as an OCI LinuxSeccomp, compiled to BPF (cached by checksum) and installed. Knows nothing of containers.
