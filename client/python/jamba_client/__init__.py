"""Python client for a jamba-serving cluster's public gRPC API (jamba.v1.Jamba).

    from jamba_client import Client, JambaError

    with Client("127.0.0.1:50051", deadline=60) as client:
        for chunk in client.generate(prompt="In the beginning", temperature=0,
                                     max_new_tokens=16):
            print(chunk.text, end="", flush=True)

See client.py for the contract (retries, cancellation, unset sampling parameters).
The generated protobuf modules are in jamba_client.protos.
"""

from jamba_client.client import (SAMPLING_FIELDS, Client, Completion, ExpertKey, GenerateChunk,
                                 LayerInfo, ModelInfo, TokenLogprob, TopLogprob, Usage,
                                 WorkerInfo, generate_request, sampling_params)
from jamba_client.errors import JambaError

__version__ = "0.1.0"

__all__ = [
    "Client", "Completion", "ExpertKey", "GenerateChunk", "JambaError", "LayerInfo",
    "ModelInfo", "SAMPLING_FIELDS", "TokenLogprob", "TopLogprob", "Usage", "WorkerInfo",
    "generate_request", "sampling_params",
]
