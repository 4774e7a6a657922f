"""Integration tests: the operator and the rig against a real control plane and S3 server."""
