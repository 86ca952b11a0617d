"""Encoders, label sets, miners, losses, the batch sampler and training/embedding steps (DESIGN §8).

Import the modules directly (radsim.model.encoders, .losses, ...): this package file stays
empty of imports so that `radsim --help` does not load torch.
"""
