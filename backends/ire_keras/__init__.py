"""ire_keras: IRE as Keras 3 optimizers."""
