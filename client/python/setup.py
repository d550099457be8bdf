"""pip build hook: generates jamba_client/_generated with grpcio-tools (see pyproject.toml)."""

import os
import sys
from importlib import metadata

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.environ.get("JAMBA_PROTO_DIR", os.path.join(HERE, "..", "..", "proto"))
# The public API; keep in step with _protos in CMakeLists.txt (minus grpc.health.v1, which
# comes from grpcio-health-checking here).
PROTOS = ["jamba/v1/generate.proto"]
GENERATED_PACKAGE = "jamba_client._generated"

sys.path.insert(0, HERE)
import fix_proto_imports  # noqa: E402


def _dependencies():
    # Generated code checks that the runtimes are at least as new as its generator (protobuf
    # gencode since 3.20, grpcio's since 1.63), so the generator's versions are the floors.
    tools = metadata.version("grpcio-tools")
    protobuf = metadata.version("protobuf")
    return ["grpcio>=%s" % tools, "protobuf>=%s" % protobuf, "grpcio-health-checking"]


class BuildPyWithProtos(build_py):

    def run(self):
        super().run()
        import grpc_tools
        from grpc_tools import protoc

        out = os.path.join(self.build_lib, *GENERATED_PACKAGE.split("."))
        os.makedirs(out, exist_ok=True)
        for proto in PROTOS:
            if not os.path.exists(os.path.join(PROTO_ROOT, proto)):
                raise SystemExit("%s not found under %s: build from a repository checkout or "
                                 "set JAMBA_PROTO_DIR" % (proto, PROTO_ROOT))
        well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        args = ["grpc_tools.protoc", "-I", PROTO_ROOT, "-I", well_known,
                "--python_out=" + out, "--grpc_python_out=" + out] + PROTOS
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed: %s" % " ".join(args))
        fix_proto_imports.fix_tree(out, PROTOS, GENERATED_PACKAGE)


setup(install_requires=_dependencies(), cmdclass={"build_py": BuildPyWithProtos})
