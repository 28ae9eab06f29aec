"""Running a study's configurations on a Dask distributed cluster (the ``dask`` extra) instead
of the local process pool: ``pynn study sweep --dask ADDRESS``.

Start a scheduler on one machine and a worker on each machine that should train (every one
with the same pynn installed and MNIST in its cache or in the same --data-dir):

    dask scheduler                        # prints its address, tcp://HOST:8786
    dask worker tcp://HOST:8786           # on every machine; --nthreads N runs N at once

Each configuration is one task. A worker loads the split once, with the first task that lands
on it, from the data directory the client names or its own cache, as the local pool's
initializer does; its configurations share the machine's cores. Results come back to the
client one at a time, in finishing order, and are appended to the same CSV as a local run's,
so the progress bar, the skipping of finished configurations on a rerun and the report are
the local run's own. The seeds are the configurations' own and the kernels give the same bits
on any thread count, so a configuration trained on the cluster gives the numbers it gives
locally.

A worker that dies takes its running configurations with it; the scheduler gives them to
another worker (up to its ``allowed-failures``, 3 by default). They resume from their last
finished epoch where the new worker sees the checkpoint (one machine, or the output directory
on a shared filesystem), and otherwise train again from the start, to the same result.
"""
import os
import threading

from .common import init_worker, threads_for

INSTALL = 'pip install -e ".[dask]"'
CONNECT_TIMEOUT = "20s"

_loaded = []                  # the (data_dir, quick) whose split this worker process holds
_loading = threading.Lock()   # a worker may run several tasks at once, in threads


def on_worker(fn, task, data_dir, quick):
    """``fn(task)`` in a Dask worker process, after loading the split if it has not got it."""
    from distributed import get_worker
    with _loading:
        if _loaded != [(data_dir, quick)]:
            init_worker(data_dir, quick, threads_for(get_worker().state.nthreads))
            _loaded[:] = [(data_dir, quick)]
    return fn(task)


def client(address):
    """A client of the scheduler at ``address``; a missing extra or an unreachable scheduler is
    a one-line error."""
    try:
        from distributed import Client
    except ImportError:
        raise SystemExit(f"pynn study: error: --dask needs dask.distributed, which is not "
                         f"installed: {INSTALL}") from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as e:
        raise SystemExit(f"pynn study: error: cannot reach the Dask scheduler at {address!r}: {e}") from None


def run(address, fn, tasks, data_dir, quick):
    """Yield ``fn(task)`` for every task, in finishing order, computed on the cluster."""
    data_dir = os.path.abspath(data_dir) if data_dir else None
    with client(address) as c:
        from distributed import as_completed
        print(f"dask: {len(tasks)} tasks to the scheduler at {address} "
              f"({len(c.nthreads())} workers now)")
        futures = [c.submit(on_worker, fn, t, data_dir, quick, pure=False) for t in tasks]
        for future in as_completed(futures):
            yield future.result()
            future.release()
