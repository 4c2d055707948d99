"""The gRPC load benchmark's peers: bare grpcio echo servers of OfferService.

Each answers Decide with a constant response and does nothing else (no interceptor, no
validation, no Engine), so it measures what grpcio itself costs per call: the ceiling the nbo
server is compared with in the same run. Two flavours, because grpcio's two servers differ:

- ``sync``: ``grpc.server`` with a thread pool (each call hops to a worker thread);
- ``aio``: ``grpc.aio.server`` with an ``async def`` handler on the event loop.

Run one as a child process (it prints its port the way ``nbo serve`` does)::

    python -m benchmarks.grpc_echo sync|aio
"""

from __future__ import annotations

import asyncio
import sys
from concurrent import futures
from typing import Any

import grpc

from engine.serving.pb import offers_pb2 as pb
from engine.serving.pb import offers_pb2_grpc as pb_grpc

FLAVOURS = ("sync", "aio")
READY_LINE = "nbo serve: listening on port "


def _answer() -> pb.DecideResponse:
    return pb.DecideResponse(decision_id="echo", offer_id="none", propensity=1.0)


class SyncEchoServicer(pb_grpc.OfferServiceServicer):
    """Decide without deciding anything, on grpcio's thread-pool server."""

    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.DecideResponse:
        return _answer()


class AioEchoServicer(pb_grpc.OfferServiceServicer):
    """Decide without deciding anything, on the asyncio server's event loop."""

    async def Decide(self, request: pb.DecideRequest, context: Any) -> pb.DecideResponse:
        return _answer()


def run_sync(threads: int = 8) -> None:
    """Serve the thread-pool echo server on a free loopback port until killed."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    pb_grpc.add_OfferServiceServicer_to_server(SyncEchoServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"{READY_LINE}{port}", flush=True)
    server.wait_for_termination()


async def _run_aio() -> None:
    server = grpc.aio.server()
    pb_grpc.add_OfferServiceServicer_to_server(AioEchoServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"{READY_LINE}{port}", flush=True)
    await server.wait_for_termination()


def run_aio() -> None:
    """Serve the asyncio echo server on a free loopback port until killed."""
    asyncio.run(_run_aio())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in FLAVOURS:
        print(f"usage: python -m benchmarks.grpc_echo {{{'|'.join(FLAVOURS)}}}", file=sys.stderr)
        return 2
    run_sync() if args[0] == "sync" else run_aio()
    return 0


if __name__ == "__main__":
    sys.exit(main())
