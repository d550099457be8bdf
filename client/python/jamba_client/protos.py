"""The generated protobuf/gRPC modules of the public API, wherever they were generated.

`generate_pb2` / `generate_pb2_grpc`: proto/jamba/v1/generate.proto (service jamba.v1.Jamba).
`health_pb2` / `health_pb2_grpc`: grpc.health.v1, from the `grpcio-health-checking` package
when installed (as the PyPI install requires), else the copy generated with this package from
Debian's grpc-proto. Taking the installed one first means the file grpc/health/v1/health.proto
is never registered twice in protobuf's default pool.

Both build paths (CMake with Debian's protoc, setup.py with grpcio-tools) put the generated
code under jamba_client/_generated/ with imports rewritten by fix_proto_imports.py.
"""

try:
    from jamba_client._generated.jamba.v1 import generate_pb2, generate_pb2_grpc
except ImportError as e:  # pragma: no cover - a packaging error, not a run-time condition
    raise ImportError(
        "jamba_client's generated protobuf modules are missing (%s). Build the CMake target "
        "`jamba_python_client` and put <build>/python on PYTHONPATH, or pip install "
        "client/python." % e) from e

try:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
except ImportError:
    try:
        from jamba_client._generated.grpc.health.v1 import health_pb2, health_pb2_grpc
    except ImportError:  # health() reports this when called
        health_pb2 = None
        health_pb2_grpc = None

__all__ = ["generate_pb2", "generate_pb2_grpc", "health_pb2", "health_pb2_grpc"]
