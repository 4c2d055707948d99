"""Generated gRPC stubs for ``proto/nbo/v1`` (do not edit; run ``python -m engine.serving.codegen``)."""
