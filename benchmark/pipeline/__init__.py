"""Floor 2: one run from spec to stored rows: training loop, translate, measure, finished runs."""
