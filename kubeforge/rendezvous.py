"""The rendezvous of a TrainingJob's agents, hosted apart from every worker.

`python -m kubeforge.rendezvous --port N` hosts the TCPStore in which the torchrun agents of the
job meet (the c10d rendezvous backend), until it is stopped. It runs as its own process (a
Deployment's pod in the cluster, a child of the local runner), so losing any worker, worker 0
included, leaves the store up and the survivors can re-form within `--nnodes=MIN:MAX`.

A store that outlives the groups that use it needs one change to the agents: torch closes the
rendezvous (for good, for that run id) when an agent fails, which would stop the next group from
forming on the same store. `BACKEND`, registered by `kubeforge.launch`, is torch's c10d backend
except that an agent that fails leaves the rendezvous (as it does between rounds) instead of
closing it; an agent that succeeds still closes it, so agents left waiting stop. An agent that
dies without leaving (SIGKILL, a lost node) is dropped when its heartbeats stop. A lost store does
not stop a running group (its workers do not use it); once a replacement answers at the store's
address, the group ends so that it re-forms there (docs/trainingjob-operator.md).

torch is imported only when a store or a handler is made.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch.distributed.elastic.rendezvous import RendezvousHandler, RendezvousParameters

BACKEND = "kubeforge"
"""The agents' `--rdzv-backend`: torch's c10d backend, leaving the rendezvous on failure."""
STORE_TIMEOUT = timedelta(seconds=60)
REPLACED = "the rendezvous store was replaced: the group re-forms in the new one"
PROBE_SECONDS = 1.0
"""How long an agent that lost the store waits for a connection to its address, each poll."""


def _answers(address: tuple[str, int]) -> bool:
    """Whether something accepts connections at the store's address (a store pod replaced)."""
    try:
        socket.create_connection(address, timeout=PROBE_SECONDS).close()
    except OSError:
        return False
    return True


def _create_handler(params: RendezvousParameters) -> RendezvousHandler:
    from torch.distributed.elastic.rendezvous import RendezvousConnectionError
    from torch.distributed.elastic.rendezvous import dynamic_rendezvous as dynamic
    from torch.distributed.elastic.rendezvous.c10d_rendezvous_backend import create_backend
    from torch.distributed.elastic.rendezvous.utils import parse_rendezvous_endpoint

    address = parse_rendezvous_endpoint(params.endpoint, default_port=-1)

    class LeavingHandler(dynamic.DynamicRendezvousHandler):
        def get_backend(self) -> str:
            return BACKEND  # torch checks that the handler is the backend that was asked for

        def num_nodes_waiting(self) -> int:
            # The agent polls this while its workers run, to see agents waiting to join. The
            # running group does not need the store (its process group has its own, per round),
            # so while the store is gone the group trains on. Once its replacement answers, the
            # group ends (this agent fails, its workers stop): an agent arriving there would
            # otherwise form a second group of the same job, and the new store holds none of
            # this one's members.
            try:
                return super().num_nodes_waiting()
            except RendezvousConnectionError:
                if _answers(address):
                    raise RendezvousConnectionError(REPLACED) from None
                return 0

        def shutdown(self) -> bool:
            # torch's launcher calls this in a `finally`: with an exception on its way out, the
            # agent failed, and the group that replaces it must find the rendezvous open.
            if sys.exc_info()[0] is None:
                return super().shutdown()
            self._stop_heartbeats()
            deadline = self._get_deadline(self._settings.timeout.close)
            try:
                self._op_executor.run(dynamic._RendezvousExitOp(), deadline)
            except RendezvousConnectionError:
                # The store is gone as well: leaving it is moot, and raising here would replace
                # the failure on its way out (the worker's exit code) with the store's.
                return False
            return True

    backend, store = create_backend(params)
    handler = dynamic.create_handler(store, backend, params)
    handler.__class__ = LeavingHandler  # create_handler reads the parameters; keep its result
    return handler


def register_backend() -> None:
    """Makes `--rdzv-backend=kubeforge` available to torchrun in this process."""
    from torch.distributed.elastic.rendezvous import rendezvous_handler_registry

    rendezvous_handler_registry.register(BACKEND, _create_handler)


def serve(port: int) -> None:
    """Hosts the store on every interface at `port` until the process is stopped."""
    from torch._C._distributed_c10d import TCPStore

    _store = TCPStore(  # serves while this object lives
        "0.0.0.0",  # noqa: S104 (the agents reach it through its Service)
        port,
        is_master=True,
        wait_for_workers=False,
        timeout=STORE_TIMEOUT,
        multi_tenant=True,
    )
    print(f"kubeforge.rendezvous: serving on port {port}", flush=True)
    threading.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeforge.rendezvous", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="TCP port of the store")
    serve(parser.parse_args(argv).port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
