"""A thin, typed wrapper over the jamba.v1.Jamba gRPC service (proto/jamba/v1/generate.proto).

Contract (what callers may rely on):
  * Results are plain dataclasses (GenerateChunk, Completion, ModelInfo, ...); finish reasons
    are the strings "stop" / "length", or None while a sequence is still running.
  * Every failed RPC is raised as JambaError (code, details), chained to the grpc.RpcError.
  * UNAVAILABLE is retried with exponential back-off (with jitter), up to `max_attempts` calls
    in all, and never past the call's deadline: another call is made only if, after its wait,
    the time left is at least twice what the failed call took (and at least 20 ms); otherwise
    the UNAVAILABLE is raised rather than a DEADLINE_EXCEEDED from a call with no time to answer. A Generate stream is retried only until its
    first chunk has arrived: after that a retry would repeat tokens, so the error is raised.
  * Closing the generator returned by generate() (explicitly, or by dropping it, as leaving a
    `for` loop over it does) cancels the RPC; the gateway then frees the sequence.
  * Sampling keyword arguments are SamplingParams' fields; an argument left out (or None) is
    left unset on the wire, so the server's defaults apply (proto3 `optional` presence is kept:
    temperature=0 is sent as a set 0, meaning greedy).
"""

import dataclasses
import random
import time
from typing import Iterator, List, Optional, Sequence

import grpc
from google.protobuf.descriptor import FieldDescriptor

from jamba_client.errors import JambaError
from jamba_client.protos import generate_pb2, generate_pb2_grpc, health_pb2, health_pb2_grpc

# Same as the servers' limit (rpc/server.h kMaxMessageBytes): long prompts with logprobs exceed
# gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 256 << 20

SAMPLING_FIELDS = tuple(f.name for f in generate_pb2.SamplingParams.DESCRIPTOR.fields)

_DEFAULT = object()  # "use the client's deadline"

# The least time left before the deadline that a retry is started with (seconds).
_MIN_ATTEMPT_S = 0.02


@dataclasses.dataclass
class TopLogprob:
    token_id: int
    logprob: float


@dataclasses.dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    top: List[TopLogprob]  # most likely first


@dataclasses.dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclasses.dataclass
class GenerateChunk:
    token_ids: List[int]  # new tokens since the previous chunk
    text: str  # the text they released (maybe empty)
    finish_reason: Optional[str]  # "stop" / "length" on the last chunk, else None
    usage: Optional[Usage]  # on the last chunk
    logprobs: List[TokenLogprob]  # one per token id, if requested
    prompt_logprobs: List[TokenLogprob]  # first chunk only, if requested


@dataclasses.dataclass
class Completion:
    token_ids: List[int]
    text: str
    finish_reason: Optional[str]
    usage: Optional[Usage]
    logprobs: List[TokenLogprob]
    prompt_logprobs: List[TokenLogprob]


@dataclasses.dataclass
class LayerInfo:
    mixer: str  # "attention" or "mamba"
    ffn: str  # "none", "mlp" or "moe"


@dataclasses.dataclass
class ExpertKey:
    layer: int
    expert: int


@dataclasses.dataclass
class WorkerInfo:
    address: str
    role: str  # "layer" or "expert"
    layer_begin: int  # layer workers: [layer_begin, layer_end)
    layer_end: int
    experts: List[ExpertKey]  # expert workers
    pipeline: int = 0  # layer workers: the pipeline (full set of stages) it belongs to


@dataclasses.dataclass
class ModelInfo:
    architecture: str  # the HF model_type, "jamba"
    layers: List[LayerInfo]
    context_limit: int
    vocab_size: int
    fingerprint: str
    workers: List[WorkerInfo]


def _finish_reason(value: int) -> Optional[str]:
    if value == generate_pb2.FINISH_REASON_UNSPECIFIED:
        return None
    try:
        name = generate_pb2.FinishReason.Name(value)
    except ValueError:  # a reason newer than this client (proto3 enums are open)
        return "unknown_%d" % value
    prefix = "FINISH_REASON_"
    return (name[len(prefix):] if name.startswith(prefix) else name).lower()


def _logprobs(messages) -> List[TokenLogprob]:
    return [
        TokenLogprob(m.token_id, m.logprob, [TopLogprob(t.token_id, t.logprob) for t in m.top])
        for m in messages
    ]


def _usage(message) -> Optional[Usage]:
    if not message.HasField("usage"):
        return None
    return Usage(message.usage.prompt_tokens, message.usage.completion_tokens)


def _chunk(message) -> GenerateChunk:
    return GenerateChunk(
        token_ids=list(message.token_ids),
        text=message.text,
        finish_reason=_finish_reason(message.finish_reason),
        usage=_usage(message),
        logprobs=_logprobs(message.logprobs),
        prompt_logprobs=_logprobs(message.prompt_logprobs),
    )


def _completion(message) -> Completion:
    return Completion(
        token_ids=list(message.token_ids),
        text=message.text,
        finish_reason=_finish_reason(message.finish_reason),
        usage=_usage(message),
        logprobs=_logprobs(message.logprobs),
        prompt_logprobs=_logprobs(message.prompt_logprobs),
    )


def _model_info(message) -> ModelInfo:
    return ModelInfo(
        architecture=message.architecture,
        layers=[LayerInfo(layer.mixer, layer.ffn) for layer in message.layers],
        context_limit=message.context_limit,
        vocab_size=message.vocab_size,
        fingerprint=message.fingerprint,
        workers=[
            WorkerInfo(w.address, w.role, w.layer_begin, w.layer_end,
                       [ExpertKey(e.layer, e.expert) for e in w.experts], w.pipeline)
            for w in message.workers
        ],
    )


def _wire_text(message_class, field: str, value):
    """`value` as `message_class.field` takes it: str is UTF-8 encoded for `bytes` fields.

    The request-side text fields are `bytes` on the wire (so that malformed UTF-8 reaches the
    gateway, which names the bad field), but callers pass str; bytes pass through unchanged.
    """
    if message_class.DESCRIPTOR.fields_by_name[field].type != FieldDescriptor.TYPE_BYTES:
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def sampling_params(**sampling) -> "generate_pb2.SamplingParams":
    """Builds SamplingParams from keyword arguments named like its fields.

    None means unset. `stop` may be one string (str or bytes) or a list of them. Unknown names
    raise TypeError (before any RPC).
    """
    unknown = sorted(set(sampling) - set(SAMPLING_FIELDS))
    if unknown:
        raise TypeError("unknown sampling parameter(s) %s; known: %s" %
                        (", ".join(unknown), ", ".join(SAMPLING_FIELDS)))
    fields = {k: v for k, v in sampling.items() if v is not None}
    stop = fields.get("stop")
    if stop is not None:
        if isinstance(stop, (str, bytes)):
            stop = [stop]
        fields["stop"] = [_wire_text(generate_pb2.SamplingParams, "stop", s) for s in stop]
    return generate_pb2.SamplingParams(**fields)


def generate_request(prompt=None,
                     token_ids: Optional[Sequence[int]] = None,
                     *,
                     request_id: Optional[str] = None,
                     skip_special_tokens_in_prompt: Optional[bool] = None,
                     **sampling) -> "generate_pb2.GenerateRequest":
    """The GenerateRequest that Client.generate/complete send (exposed for tests and tools).

    `prompt` is str (sent as UTF-8) or bytes (sent as given).
    """
    if (prompt is None) == (token_ids is None):
        raise ValueError("give exactly one of prompt (text) or token_ids")
    request = generate_pb2.GenerateRequest(sampling=sampling_params(**sampling))
    if prompt is not None:
        request.text = _wire_text(generate_pb2.GenerateRequest, "text", prompt)
    else:
        request.token_ids.ids.extend(token_ids)
    if request_id is not None:
        request.request_id = request_id
    if skip_special_tokens_in_prompt is not None:
        request.skip_special_tokens_in_prompt = skip_special_tokens_in_prompt
    return request


class Client:
    """A connection to a jamba-serving gateway.

    Args:
      target: HOST:PORT of the gateway (any gRPC target string).
      deadline: seconds each call may take, retries and back-off included; None: no limit.
        Every method also takes deadline= to override it for one call.
      max_attempts: calls made at most for one request when the gateway answers UNAVAILABLE
        (1: no retry).
      initial_backoff, max_backoff: seconds; the n-th retry waits a random time in
        [b/2, b] with b = min(max_backoff, initial_backoff * 2**(n-1)).
      tls: use TLS (with the system's roots unless root_certificates is given).
      root_certificates: PEM bytes, or the path of a PEM file; implies tls.

    A Client is thread-safe, and a context manager that closes its channel.
    """

    def __init__(self,
                 target: str,
                 *,
                 deadline: Optional[float] = None,
                 max_attempts: int = 4,
                 initial_backoff: float = 0.1,
                 max_backoff: float = 2.0,
                 tls: bool = False,
                 root_certificates=None):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if initial_backoff < 0 or max_backoff < 0:
            raise ValueError("back-off times must not be negative")
        if deadline is not None and deadline <= 0:
            raise ValueError("deadline must be positive (seconds) or None")
        self.target = target
        self.deadline = deadline
        self.max_attempts = max_attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if tls or root_certificates is not None:
            if isinstance(root_certificates, str):
                with open(root_certificates, "rb") as f:
                    root_certificates = f.read()
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = generate_pb2_grpc.JambaStub(self._channel)
        self._health_stub = (health_pb2_grpc.HealthStub(self._channel)
                             if health_pb2_grpc is not None else None)

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Closes the channel; calls still running are cancelled."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the API -------------------------------------------------------------------------
    def generate(self,
                 prompt=None,
                 token_ids: Optional[Sequence[int]] = None,
                 *,
                 request_id: Optional[str] = None,
                 skip_special_tokens_in_prompt: Optional[bool] = None,
                 deadline=_DEFAULT,
                 **sampling) -> Iterator[GenerateChunk]:
        """Streams the completion of `prompt` or `token_ids` as GenerateChunk objects.

        `prompt`: str (sent as UTF-8) or bytes (sent as given; the gateway rejects malformed
        UTF-8 with INVALID_ARGUMENT). Sampling keyword arguments: SAMPLING_FIELDS.

        Bad arguments raise here; RPC errors (JambaError) are raised while iterating. The
        returned generator cancels the RPC when closed (close(), or garbage collection, e.g.
        on `break` out of a `for` loop that holds the only reference).
        """
        request = generate_request(prompt, token_ids, request_id=request_id,
                                   skip_special_tokens_in_prompt=skip_special_tokens_in_prompt,
                                   **sampling)
        return self._stream(request, self._deadline_at(deadline))

    def complete(self,
                 prompt=None,
                 token_ids: Optional[Sequence[int]] = None,
                 *,
                 request_id: Optional[str] = None,
                 skip_special_tokens_in_prompt: Optional[bool] = None,
                 deadline=_DEFAULT,
                 **sampling) -> Completion:
        """The whole completion, in one answer (GenerateUnary). Same arguments as generate()."""
        request = generate_request(prompt, token_ids, request_id=request_id,
                                   skip_special_tokens_in_prompt=skip_special_tokens_in_prompt,
                                   **sampling)
        return _completion(self._unary(self._stub.GenerateUnary, request, deadline))

    def tokenize(self, text, *, add_special_tokens: bool = False,
                 deadline=_DEFAULT) -> List[int]:
        """Token ids of `text` (str, sent as UTF-8, or bytes, sent as given)."""
        request = generate_pb2.TokenizeRequest(
            text=_wire_text(generate_pb2.TokenizeRequest, "text", text),
            add_special_tokens=add_special_tokens)
        return list(self._unary(self._stub.Tokenize, request, deadline).token_ids)

    def detokenize(self, token_ids: Sequence[int], *, skip_special_tokens: bool = False,
                   deadline=_DEFAULT) -> str:
        request = generate_pb2.DetokenizeRequest(token_ids=list(token_ids),
                                                 skip_special_tokens=skip_special_tokens)
        return self._unary(self._stub.Detokenize, request, deadline).text

    def model_info(self, *, deadline=_DEFAULT) -> ModelInfo:
        return _model_info(
            self._unary(self._stub.ModelInfo, generate_pb2.ModelInfoRequest(), deadline))

    def health(self, service: str = "", *, deadline=_DEFAULT) -> bool:
        """True when grpc.health.v1 says `service` ("" = the whole server) is SERVING.

        A probe: not retried; False when the server is unreachable, not serving, or does not
        know `service`. Other failures (e.g. UNIMPLEMENTED: no health service) raise JambaError.
        """
        if self._health_stub is None:
            raise RuntimeError("no grpc.health.v1 Python module: install grpcio-health-checking "
                               "or build jamba_client with Debian's grpc-proto present")
        try:
            response = self._health_stub.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=_timeout(self._deadline_at(deadline)))
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                            grpc.StatusCode.NOT_FOUND):
                return False
            raise JambaError.from_rpc_error(e) from e
        return response.status == health_pb2.HealthCheckResponse.SERVING

    # ---- retries -------------------------------------------------------------------------
    def _deadline_at(self, deadline) -> Optional[float]:
        """The call's absolute deadline on time.monotonic()'s clock, or None."""
        seconds = self.deadline if deadline is _DEFAULT else deadline
        return None if seconds is None else time.monotonic() + seconds

    def _retry_delay(self, error: grpc.RpcError, attempt: int, attempt_s: float,
                     deadline_at: Optional[float]) -> Optional[float]:
        """Seconds to wait before call number attempt + 1, or None if it must not be made.

        attempt_s: how long the failed call number `attempt` took.
        """
        if error.code() != grpc.StatusCode.UNAVAILABLE or attempt >= self.max_attempts:
            return None
        backoff = min(self.max_backoff, self.initial_backoff * (2 ** (attempt - 1)))
        delay = random.uniform(backoff / 2, backoff)
        needed = max(2 * attempt_s, _MIN_ATTEMPT_S)
        if deadline_at is not None and time.monotonic() + delay + needed > deadline_at:
            return None  # no time for another call to answer: report the real cause
        return delay

    def _unary(self, method, request, deadline):
        deadline_at = self._deadline_at(deadline)
        attempt = 1
        while True:
            start = time.monotonic()
            try:
                return method(request, timeout=_timeout(deadline_at))
            except grpc.RpcError as e:
                delay = self._retry_delay(e, attempt, time.monotonic() - start, deadline_at)
                if delay is None:
                    raise JambaError.from_rpc_error(e) from e
            time.sleep(delay)
            attempt += 1

    def _stream(self, request, deadline_at: Optional[float]) -> Iterator[GenerateChunk]:
        attempt = 1
        while True:
            start = time.monotonic()
            call = self._stub.Generate(request, timeout=_timeout(deadline_at))
            received = False
            try:
                for message in call:
                    received = True
                    yield _chunk(message)
                return
            except grpc.RpcError as e:
                delay = None if received else self._retry_delay(
                    e, attempt, time.monotonic() - start, deadline_at)
                if delay is None:
                    raise JambaError.from_rpc_error(e) from e
            finally:
                # Closing the generator lands here (GeneratorExit at the yield): cancelling
                # tells the server. After a normal end or an error it is a no-op.
                call.cancel()
            time.sleep(delay)
            attempt += 1


def _timeout(deadline_at: Optional[float]) -> Optional[float]:
    if deadline_at is None:
        return None
    # Past the deadline: still make the call, with a timeout gRPC fails at once, so the error
    # is DEADLINE_EXCEEDED like any other late call.
    return max(deadline_at - time.monotonic(), 1e-6)
