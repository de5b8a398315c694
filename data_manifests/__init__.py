"""Dataset manifests (one TOML per dataset), shipped as package data."""
