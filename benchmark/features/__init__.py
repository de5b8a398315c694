"""Floor 1: feature extractors (the base protocol, each network, weight files) and the extraction loop."""
