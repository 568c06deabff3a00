"""Several devices and hosts: one data-parallel mesh, placement, points spread over devices.

landscape scales out with JAX's own machinery, no launcher of its own:

- **Data parallel** (the default with several devices): a 1-D :class:`~jax.sharding.Mesh` with
  the axis ``"data"``; the training state is replicated (``P()``) and each minibatch is split along
  its first axis (``P("data")``). The jitted step is unchanged: XLA inserts the all-reduces, and a
  BatchNorm mean over the batch axis is the mean of the *global* batch, so a run on n devices
  equals a one-device run up to the order of floating-point reductions.
- **Points over devices** (:func:`spread_points`): the K step sizes of a Figure-4 probe, the grid
  points of a loss surface and the Hutchinson probe vectors are independent evaluations; with n
  devices each device evaluates ⌈K/n⌉ of them on the whole minibatch (``shard_map``), and only the
  per-point scalars travel — no gradient all-reduce per point.
- **Several hosts**: :func:`initialize` starts ``jax.distributed`` (from arguments, the
  ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` environment variables,
  or a cluster's own environment); every process then sees all devices, runs the same program on
  the same data, and only process 0 writes records and figures (:func:`is_writer`).

Example::

    from landscape import parallel
    mesh = parallel.make_mesh()                   # all devices, axis "data"
    state = parallel.replicate(state, mesh)
    x = parallel.shard_batch(x_numpy, mesh)       # rows split over the devices
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ["AXIS", "LAYOUTS", "ParallelError", "barrier", "check_divisible", "check_layout", "fetch",
           "initialize", "is_writer", "make_mesh", "mesh_size", "points_mesh", "replicate",
           "shard_batch", "spread_points"]

#: The name of the one mesh axis: the minibatch (data layout) or the probe points (points layout).
AXIS = "data"


class ParallelError(ValueError):
    """A device count, batch size or distributed setting that cannot work (one-line message)."""


def make_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh over the first ``devices`` devices (all when ``None``), axis :data:`AXIS`.

    With several processes (``jax.distributed``) the mesh spans every process's devices and
    ``devices`` must be ``None`` or the global device count.

    Example:
        >>> make_mesh(1).size
        1
    """
    available = jax.device_count()
    n = available if devices is None else devices
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= available:
        raise ParallelError(f"devices must be an integer from 1 to {available} (the devices JAX "
                            f"sees: {available} x {jax.devices()[0].platform}); got {devices!r}")
    if jax.process_count() > 1 and n != available:
        raise ParallelError(f"with {jax.process_count()} processes every device takes part: "
                            f"devices must be {available}; got {devices}")
    return Mesh(np.asarray(jax.devices()[:int(n)]), (AXIS,))


def mesh_size(mesh: Mesh | None) -> int:
    """Number of devices of ``mesh`` (1 for ``None``)."""
    return 1 if mesh is None else int(mesh.size)


def check_divisible(what: str, size: int, mesh: Mesh | None) -> None:
    """Raises :class:`ParallelError` unless ``size`` rows split evenly over ``mesh``'s devices."""
    n = mesh_size(mesh)
    if size % n:
        raise ParallelError(f"{what} {size} does not split over {n} devices; pick a {what} "
                            f"divisible by {n} or fewer devices (--devices)")


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _global(x: Any, sharding: NamedSharding) -> jax.Array:
    """A global array from a value every process holds in full (host or local device)."""
    if _is_key(x):
        data = _global(jax.random.key_data(x), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return jax.device_put(x, sharding)  # already global: reshard
    value = np.asarray(x)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """``tree`` with every array leaf replicated over ``mesh`` (unchanged when ``mesh`` is None).

    Every process must pass the same values (same seed, same checkpoint): each one only fills
    its own devices.
    """
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: _global(x, sharding) if _is_array(x) else x, tree)


def shard_batch(tree: Any, mesh: Mesh | None) -> Any:
    """``tree``'s arrays split along their first axis over ``mesh`` (scalars replicated).

    Every process passes the whole (global) batch; raises :class:`ParallelError` when the first
    axis does not split evenly.
    """
    if mesh is None:
        return jax.tree.map(jnp.asarray, tree)
    split, whole = NamedSharding(mesh, P(AXIS)), NamedSharding(mesh, P())

    def put(x):
        if np.ndim(x) == 0:
            return _global(x, whole)
        check_divisible("batch size", np.shape(x)[0], mesh)
        return _global(x, split)

    return jax.tree.map(put, tree)


def _is_array(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, int, float))


#: How independent evaluations (probe points) are laid out over a mesh's devices.
LAYOUTS = ("auto", "data", "points")


def check_layout(layout: str) -> str:
    """``layout`` if it is one of :data:`LAYOUTS`, else a ValueError."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    return layout


def points_mesh(layout: str, num_points: int, mesh: Mesh | None) -> Mesh | None:
    """The mesh to spread ``num_points`` independent evaluations over, or None (data layout).

    ``"points"`` always spreads them; ``"data"`` never does (every point on every device, each
    on its share of the batch); ``"auto"`` spreads them when there are at least as many points
    as devices. Measured (README, "Several devices and hosts"): on one H100 a VGG-11 gradient at
    batch 16 still costs 0.62 of one at batch 128, so splitting the batch barely shortens each
    point while spreading the points divides their number; on simulated CPU devices both run
    equally fast and the points layout compiles K/n points per device, 1.4–3.7× faster. With
    fewer points than devices some devices would idle, so ``"auto"`` keeps the data layout.

    Example:
        >>> points_mesh("auto", 8, None) is None
        True
    """
    n = mesh_size(mesh)
    if n == 1 or layout == "data" or (layout == "auto" and num_points < n):
        return None
    return mesh


def spread_points(evaluate: Callable[..., Any], points: Any, *args: Any, mesh: Mesh | None) -> Any:
    """``evaluate(points, *args)`` with the rows of ``points`` spread over ``mesh``'s devices.

    ``evaluate`` maps a block of m points (leading axis m) to a pytree of per-point results
    (leading axis m). With a mesh of n devices the N points are padded to a multiple of n
    (copies of the last point), each device evaluates its N/n rows with every ``args`` leaf in
    full (the minibatch is gathered once, θ is replicated), and the padding is dropped. Without a
    mesh this is just ``evaluate(points, *args)``. Usable inside ``jax.jit``.

    Example:
        >>> f = lambda etas, w: etas[:, None] * w[None, :]   # per-point results, leading axis K
        >>> spread_points(f, jnp.arange(3.0), jnp.ones(2), mesh=make_mesh(1)).shape
        (3, 2)
    """
    if mesh is None:
        return evaluate(points, *args)
    n = mesh_size(mesh)
    count = jax.tree.leaves(points)[0].shape[0]
    pad = (-count) % n
    if pad:
        points = jax.tree.map(lambda p: jnp.concatenate([p, jnp.repeat(p[-1:], pad, axis=0)]),
                              points)
    spread = jax.shard_map(evaluate, mesh=mesh, in_specs=(P(AXIS),) + (P(),) * len(args),
                           out_specs=P(AXIS), check_vma=False)
    out = spread(points, *args)
    return jax.tree.map(lambda o: o[:count], out) if pad else out


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False) -> bool:
    """Start ``jax.distributed`` for a run over several processes/hosts; True when started.

    Settings come from the arguments, else from ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; with none of them, a cluster launcher that
    started several processes (``SLURM_NTASKS``, ``OMPI_COMM_WORLD_SIZE`` or ``PMI_SIZE`` > 1), or
    ``auto=True``, lets JAX detect the cluster itself. Nothing set → nothing started (one process).
    Must run before anything touches a device. On CPU the collectives go through gloo.

    Example (two processes on one machine)::

        landscape reproduce fig4 --coordinator 127.0.0.1:5432 --num-processes 2 --process-id 0
        landscape reproduce fig4 --coordinator 127.0.0.1:5432 --num-processes 2 --process-id 1
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    auto = auto or (not any(given) and _cluster_processes() > 1)
    if not any(given) and not auto:
        return False
    if any(given) and not all(given):
        raise ParallelError("a multi-process run needs all three of the coordinator address, "
                            "the number of processes and this process's id (flags "
                            "--coordinator/--num-processes/--process-id or JAX_COORDINATOR_ADDRESS/"
                            "JAX_NUM_PROCESSES/JAX_PROCESS_ID)")
    if all(given) and not 0 <= process_id < num_processes:
        raise ParallelError(f"process id {process_id} is not in 0..{num_processes - 1}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    except (RuntimeError, ValueError) as e:
        raise ParallelError(f"jax.distributed.initialize failed: {str(e).splitlines()[0]}") from None
    return True


#: Process counts a cluster launcher sets (SLURM's srun, Open MPI's mpirun, MPICH/PMI).
_CLUSTER_SIZES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def _cluster_processes() -> int:
    """How many processes a cluster launcher started (1 when none did)."""
    for name in _CLUSTER_SIZES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ParallelError(f"{name}={value!r} is not an integer") from None


def fetch(tree: Any) -> Any:
    """``jax.device_get`` that also works on arrays spanning several processes: a replicated
    array is read from this process's own copy, a sharded one is gathered from every process
    (then every process must call it, in the same order)."""
    def local(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.is_fully_replicated:
                return x.addressable_data(0)
            from jax.experimental import multihost_utils

            return multihost_utils.process_allgather(x, tiled=True)
        return x

    return jax.device_get(jax.tree.map(local, tree))


def barrier(name: str) -> None:
    """Wait until every process gets here (nothing to do in a one-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def is_writer() -> bool:
    """True in the one process that writes records, checkpoints' metadata and figures (process 0)."""
    return jax.process_index() == 0
