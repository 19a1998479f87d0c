"""ire_torch: IRE as torch.optim optimizers."""
