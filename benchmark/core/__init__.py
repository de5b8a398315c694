"""Floor 0: errors, paths, atomic writes, locks, run specs, the store, the registry, profiles and the Method contract."""
