"""Tiny pure-JAX losses shared by the probe tests (the test zoo): one definition each."""

import jax
import jax.numpy as jnp
import optax


def cnn_loss(params, batch):
    """One strided VALID convolution (HWIO kernel, NHWC input), tanh, a linear head, and mean
    softmax cross-entropy: the smallest convnet whose Hessian is still dense and non-trivial."""
    x = jax.lax.conv_general_dilated(batch["x"], params["conv"]["kernel"], (2, 2), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = jnp.tanh(x + params["conv"]["bias"][None, None, None, :])
    logits = x.reshape(x.shape[0], -1) @ params["head"]["kernel"] + params["head"]["bias"][None, :]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]))
