"""Floor 3: analyses over finished runs (shift, downstream with its probe and fine-tuned classifiers) and sweeps."""
