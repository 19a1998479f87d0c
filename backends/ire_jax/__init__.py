"""ire_jax: IRE as optax gradient transformations."""
