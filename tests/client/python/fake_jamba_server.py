"""A scripted jamba.v1.Jamba server (plus grpc.health.v1) for the Python client's tests.

It answers like a gateway would, with made-up tokens: for a request with max_new_tokens n
(0: 16) the completion is ids 100, 101, ..., 100 + n - 1, the text of id i is "<i>", and the
stream sends them two per chunk with the finish reason (LENGTH) and usage on the last chunk.
top_p outside (0, 1] and prompts that are not UTF-8 are rejected with INVALID_ARGUMENT, as the
gateway does. (Request text fields are `bytes` on the wire.)

Tests change behaviour per call through `FakeJamba.generate_script`: a function
(request, context, call_number) -> iterator of GenerateChunk that replaces the default stream
(call_number counts Generate calls from 1). `unary_failures` makes the first GenerateUnary calls
fail with the given codes. Every request is recorded.
"""

import threading
from concurrent import futures

import grpc

from jamba_client.protos import generate_pb2, generate_pb2_grpc, health_pb2, health_pb2_grpc

FIRST_TOKEN_ID = 100


def completion_ids(request):
    n = request.sampling.max_new_tokens or 16
    return [FIRST_TOKEN_ID + i for i in range(n)]


def token_text(token_id):
    return "<%d>" % token_id


def prompt_length(request):
    if request.WhichOneof("prompt") == "token_ids":
        return len(request.token_ids.ids)
    return len(request.text)


def token_logprobs(ids, top_n):
    return [
        generate_pb2.TokenLogprob(
            token_id=i, logprob=-0.5,
            top=[generate_pb2.TopLogprob(token_id=i + k, logprob=-0.5 - k) for k in range(top_n)])
        for i in ids
    ]


def default_chunks(request):
    ids = completion_ids(request)
    top_n = request.sampling.logprobs if request.sampling.HasField("logprobs") else None
    chunks = []
    for start in range(0, len(ids), 2):
        part = ids[start:start + 2]
        chunk = generate_pb2.GenerateChunk(token_ids=part,
                                           text="".join(token_text(i) for i in part))
        if top_n is not None:
            chunk.logprobs.extend(token_logprobs(part, top_n))
        chunks.append(chunk)
    last = generate_pb2.GenerateChunk(finish_reason=generate_pb2.FINISH_REASON_LENGTH)
    last.usage.prompt_tokens = prompt_length(request)
    last.usage.completion_tokens = len(ids)
    chunks.append(last)
    return chunks


def validate(request, context):
    """Aborts the RPC like the gateway does for a bad request."""
    if request.WhichOneof("prompt") == "text":
        try:
            request.text.decode("utf-8")
        except UnicodeDecodeError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "text: not valid UTF-8")
    s = request.sampling
    if s.HasField("top_p") and not 0.0 < s.top_p <= 1.0:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      "top_p must be in (0, 1], got %g" % s.top_p)


class FakeJamba(generate_pb2_grpc.JambaServicer):

    def __init__(self):
        self._lock = threading.Lock()
        self.requests = []  # Generate and GenerateUnary requests, in arrival order
        self.generate_calls = 0
        self.unary_calls = 0
        self.generate_script = None
        self.unary_failures = []  # grpc.StatusCode per GenerateUnary call, consumed in order

    def Generate(self, request, context):
        with self._lock:
            self.requests.append(request)
            self.generate_calls += 1
            call_number = self.generate_calls
            script = self.generate_script
        if script is not None:
            yield from script(request, context, call_number)
            return
        validate(request, context)
        yield from default_chunks(request)

    def GenerateUnary(self, request, context):
        with self._lock:
            self.requests.append(request)
            self.unary_calls += 1
            failure = self.unary_failures.pop(0) if self.unary_failures else None
        if failure is not None:
            context.abort(failure, "scripted failure")
        validate(request, context)
        ids = completion_ids(request)
        response = generate_pb2.GenerateResponse(
            token_ids=ids, text="".join(token_text(i) for i in ids),
            finish_reason=generate_pb2.FINISH_REASON_LENGTH)
        response.usage.prompt_tokens = prompt_length(request)
        response.usage.completion_tokens = len(ids)
        return response

    def Tokenize(self, request, context):
        try:
            text = request.text.decode("utf-8")
        except UnicodeDecodeError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "text is not valid UTF-8")
        ids = [ord(c) for c in text]
        if request.add_special_tokens:
            ids.insert(0, 1)  # "BOS"
        return generate_pb2.TokenizeResponse(token_ids=ids)

    def Detokenize(self, request, context):
        ids = [i for i in request.token_ids if not (request.skip_special_tokens and i == 1)]
        try:
            return generate_pb2.DetokenizeResponse(text="".join(chr(i) for i in ids))
        except ValueError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "token id out of range")

    def ModelInfo(self, request, context):
        info = generate_pb2.ModelInfoResponse(architecture="jamba", context_limit=4096,
                                              vocab_size=512, fingerprint="fake")
        info.layers.add(mixer="mamba", ffn="mlp")
        info.layers.add(mixer="attention", ffn="moe")
        info.workers.add(address="127.0.0.1:1", role="layer", layer_begin=0, layer_end=2)
        expert = info.workers.add(address="127.0.0.1:2", role="expert")
        expert.experts.add(layer=1, expert=3)
        return info


class FakeHealth(health_pb2_grpc.HealthServicer):
    """grpc.health.v1 with settable statuses; unknown services get NOT_FOUND (as gRPC's)."""

    def __init__(self):
        self.statuses = {"": health_pb2.HealthCheckResponse.SERVING}

    def Check(self, request, context):
        status = self.statuses.get(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return health_pb2.HealthCheckResponse(status=status)


class RunningFake:
    """A started server on 127.0.0.1:`port` (0: a free one); stop() when done."""

    def __init__(self, port=0):
        self.jamba = FakeJamba()
        self.health = FakeHealth()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        generate_pb2_grpc.add_JambaServicer_to_server(self.jamba, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:%d" % port)
        if self.port == 0:
            raise RuntimeError("cannot listen on 127.0.0.1:%d" % port)
        self.target = "127.0.0.1:%d" % self.port
        self.server.start()

    def stop(self):
        self.server.stop(grace=None).wait()
