"""The one exception type of jamba_client: every failed RPC surfaces as a JambaError."""

import grpc


class JambaError(Exception):
    """A call to the cluster failed.

    Attributes:
      code: the grpc.StatusCode the server (or the channel) answered, e.g.
        grpc.StatusCode.INVALID_ARGUMENT for a bad sampling parameter, UNAVAILABLE when the
        gateway cannot be reached (after the client's retries), DEADLINE_EXCEEDED, CANCELLED.
      details: the status message, as the server wrote it.
    The grpc.RpcError it was made from is chained as __cause__.
    """

    def __init__(self, code, details):
        super().__init__("%s: %s" % (getattr(code, "name", code), details))
        self.code = code
        self.details = details

    @classmethod
    def from_rpc_error(cls, error):
        # Every RpcError gRPC raises is also a grpc.Call; the fallbacks cover hand-made ones.
        code_fn = getattr(error, "code", None)
        details_fn = getattr(error, "details", None)
        code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
        details = details_fn() if callable(details_fn) else str(error)
        return cls(code if code is not None else grpc.StatusCode.UNKNOWN, details or "")
