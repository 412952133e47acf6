"""The gRPC serving layer: ``streamrec.v1.Recommender`` over grpc.aio (see ``server.serve``).

Modules, one job each: ``protos`` generates the stubs, ``validation`` checks requests, ``sessions``
reads Redis, ``loader`` builds a checked ``state.ServingState`` from the registry, ``watcher`` swaps
new versions in, ``servicer`` answers the RPCs, ``metrics`` exports Prometheus metrics, ``server``
puts them together, ``client`` is the CLI's client, ``bench`` the load generator.

Importing this package imports nothing heavy; import the module you need.
"""

from __future__ import annotations

__all__: list[str] = []
