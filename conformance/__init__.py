"""Cross-backend conformance: one scenario suite, one driver per backend."""
