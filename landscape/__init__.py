"""landscape: loss-landscape geometry probes for JAX / Flax NNX."""
__version__ = "0.1.0"
