"""gRPC serving of nbo campaigns: servicers, interceptors, health, reflection, metrics.

This is the only package that imports grpc (besides the client in ``engine.client``). Build a
server with :func:`engine.serving.server.create_server`; run one with ``nbo serve``.
"""
