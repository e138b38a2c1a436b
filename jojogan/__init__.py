"""jojogan: one-shot face stylization with JoJoGAN on StyleGAN2."""

__version__ = "0.1.0"
