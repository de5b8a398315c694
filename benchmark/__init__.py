"""artshift harness: data, registry, features, metrics, store, runs and the `bench` CLI."""

__version__ = "0.1.0"
