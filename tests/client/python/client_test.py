"""Tests of jamba_client against a fake jamba.v1.Jamba server on 127.0.0.1 (port 0).

Run: PYTHONPATH=<build>/python python3 tests/client/python/client_test.py  (CTest does this).
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fake_jamba_server import FIRST_TOKEN_ID, RunningFake, default_chunks  # noqa: E402
from jamba_client import Client, Completion, GenerateChunk, JambaError, Usage  # noqa: E402
from jamba_client.protos import generate_pb2, health_pb2  # noqa: E402

# Generous bound for "the server saw it": only reached when something is broken.
WAIT_S = 10


def free_port():
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeServerTest(unittest.TestCase):
    CLIENT_DEADLINE = WAIT_S

    def setUp(self):
        self.fake = RunningFake()
        self.addCleanup(self.fake.stop)
        self.client = Client(self.fake.target, deadline=self.CLIENT_DEADLINE,
                             initial_backoff=0.01, max_backoff=0.02)
        self.addCleanup(self.client.close)


class StreamingTest(FakeServerTest):

    def test_streams_chunks_in_order_with_finish_and_usage_last(self):
        chunks = list(self.client.generate(prompt="hello", max_new_tokens=5))
        self.assertTrue(all(isinstance(c, GenerateChunk) for c in chunks))
        self.assertEqual([c.token_ids for c in chunks],
                         [[100, 101], [102, 103], [104], []])
        self.assertEqual("".join(c.text for c in chunks), "<100><101><102><103><104>")
        self.assertEqual([c.finish_reason for c in chunks], [None, None, None, "length"])
        self.assertEqual([c.usage for c in chunks[:-1]], [None, None, None])
        self.assertEqual(chunks[-1].usage, Usage(prompt_tokens=5, completion_tokens=5))

    def test_stop_finish_reason(self):
        def script(request, context, call_number):
            yield generate_pb2.GenerateChunk(token_ids=[7], text="x",
                                             finish_reason=generate_pb2.FINISH_REASON_STOP)
        self.fake.jamba.generate_script = script
        chunks = list(self.client.generate(prompt="p"))
        self.assertEqual(chunks[0].finish_reason, "stop")

    def test_unknown_finish_reason_is_reported_not_dropped(self):
        def script(request, context, call_number):
            yield generate_pb2.GenerateChunk(finish_reason=7)
        self.fake.jamba.generate_script = script
        chunks = list(self.client.generate(prompt="p"))
        self.assertEqual(chunks[0].finish_reason, "unknown_7")

    def test_logprobs_are_mapped(self):
        chunks = list(self.client.generate(prompt="p", max_new_tokens=1, logprobs=2))
        self.assertEqual(len(chunks[0].logprobs), 1)
        lp = chunks[0].logprobs[0]
        self.assertEqual(lp.token_id, FIRST_TOKEN_ID)
        self.assertAlmostEqual(lp.logprob, -0.5)
        self.assertEqual([t.token_id for t in lp.top], [FIRST_TOKEN_ID, FIRST_TOKEN_ID + 1])
        self.assertAlmostEqual(lp.top[1].logprob, -1.5)

    def test_complete_matches_stream(self):
        streamed = list(self.client.generate(prompt="abc", max_new_tokens=6))
        result = self.client.complete(prompt="abc", max_new_tokens=6)
        self.assertIsInstance(result, Completion)
        self.assertEqual(result.token_ids, [i for c in streamed for i in c.token_ids])
        self.assertEqual(result.text, "".join(c.text for c in streamed))
        self.assertEqual(result.finish_reason, "length")
        self.assertEqual(result.usage, Usage(3, 6))
        self.assertEqual(self.fake.jamba.unary_calls, 1)


class RequestTest(FakeServerTest):

    def sent(self):
        self.assertEqual(len(self.fake.jamba.requests), 1)
        return self.fake.jamba.requests[0]

    def test_unset_sampling_fields_stay_unset(self):
        list(self.client.generate(prompt="hi", temperature=0, max_new_tokens=3))
        request = self.sent()
        self.assertEqual(request.WhichOneof("prompt"), "text")
        self.assertEqual(request.text, "hi".encode("utf-8"))
        s = request.sampling
        # temperature=0 is a value (greedy), not "unset".
        self.assertTrue(s.HasField("temperature"))
        self.assertEqual(s.temperature, 0.0)
        for name in ("top_p", "repetition_penalty", "seed", "logprobs", "prompt_logprobs"):
            self.assertFalse(s.HasField(name), name)
        self.assertEqual(s.max_new_tokens, 3)
        self.assertEqual((s.top_k, s.min_p, s.ignore_eos), (0, 0.0, False))
        self.assertEqual((list(s.stop_token_ids), list(s.stop)), ([], []))
        self.assertEqual(request.request_id, "")

    def test_every_sampling_field_is_sent(self):
        self.client.complete(token_ids=[5, 6, 7], temperature=0.5, top_k=5, top_p=0.9,
                             min_p=0.1, repetition_penalty=1.1, seed=2**40 + 1,
                             max_new_tokens=4, stop_token_ids=[1, 2], stop="END",
                             ignore_eos=True, logprobs=2, prompt_logprobs=0,
                             request_id="req-1", skip_special_tokens_in_prompt=True)
        request = self.sent()
        self.assertEqual(request.WhichOneof("prompt"), "token_ids")
        self.assertEqual(list(request.token_ids.ids), [5, 6, 7])
        self.assertEqual(request.request_id, "req-1")
        self.assertTrue(request.skip_special_tokens_in_prompt)
        s = request.sampling
        self.assertAlmostEqual(s.temperature, 0.5)
        self.assertEqual(s.top_k, 5)
        self.assertAlmostEqual(s.top_p, 0.9, places=6)
        self.assertAlmostEqual(s.min_p, 0.1, places=6)
        self.assertAlmostEqual(s.repetition_penalty, 1.1, places=6)
        self.assertEqual(s.seed, 2**40 + 1)
        self.assertEqual(s.max_new_tokens, 4)
        self.assertEqual(list(s.stop_token_ids), [1, 2])
        self.assertEqual(list(s.stop), [b"END"])
        self.assertTrue(s.ignore_eos)
        self.assertEqual(s.logprobs, 2)
        # Set to 0 is still set: presence is what the server looks at.
        self.assertTrue(s.HasField("prompt_logprobs"))
        self.assertEqual(s.prompt_logprobs, 0)

    def test_text_is_sent_as_utf8_and_bytes_as_given(self):
        self.client.complete(prompt="na\u00efve \u2713", stop=["\u00e9", b"\xff"])
        self.client.tokenize("\u00e9")
        with self.assertRaises(JambaError) as caught:
            self.client.complete(prompt=b"\xff\xfe")
        self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        first, second = self.fake.jamba.requests
        self.assertEqual(first.text, "na\u00efve \u2713".encode("utf-8"))
        self.assertEqual(list(first.sampling.stop), [b"\xc3\xa9", b"\xff"])
        self.assertEqual(second.text, b"\xff\xfe")

    def test_bad_arguments_raise_before_any_rpc(self):
        with self.assertRaises(TypeError):
            self.client.generate(prompt="p", temprature=0)  # misspelt
        with self.assertRaises(ValueError):
            self.client.generate(prompt="p", token_ids=[1])
        with self.assertRaises(ValueError):
            self.client.complete()
        self.assertEqual(self.fake.jamba.requests, [])


class RetryTest(FakeServerTest):

    def test_retries_unavailable_before_first_chunk(self):
        def script(request, context, call_number):
            if call_number < 3:
                context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
            yield from default_chunks(request)
        self.fake.jamba.generate_script = script
        chunks = list(self.client.generate(prompt="p", max_new_tokens=2))
        self.assertEqual([c.token_ids for c in chunks], [[100, 101], []])
        self.assertEqual(self.fake.jamba.generate_calls, 3)

    def test_gives_up_after_max_attempts(self):
        def script(request, context, call_number):
            context.abort(grpc.StatusCode.UNAVAILABLE, "down")
            yield  # a generator, like every streaming handler
        self.fake.jamba.generate_script = script
        client = Client(self.fake.target, max_attempts=3, initial_backoff=0.01)
        self.addCleanup(client.close)
        with self.assertRaises(JambaError) as caught:
            list(client.generate(prompt="p"))
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(caught.exception.details, "down")
        self.assertEqual(self.fake.jamba.generate_calls, 3)

    def test_no_retry_after_first_chunk(self):
        def script(request, context, call_number):
            yield generate_pb2.GenerateChunk(token_ids=[100], text="<100>")
            context.abort(grpc.StatusCode.UNAVAILABLE, "worker lost")
        self.fake.jamba.generate_script = script
        received = []
        with self.assertRaises(JambaError) as caught:
            for chunk in self.client.generate(prompt="p"):
                received.append(chunk.token_ids)
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(received, [[100]])
        self.assertEqual(self.fake.jamba.generate_calls, 1)

    def test_no_retry_on_other_codes(self):
        def script(request, context, call_number):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
            yield
        self.fake.jamba.generate_script = script
        with self.assertRaises(JambaError) as caught:
            list(self.client.generate(prompt="p"))
        self.assertEqual(caught.exception.code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(self.fake.jamba.generate_calls, 1)

    def test_unary_calls_retry_unavailable(self):
        self.fake.jamba.unary_failures = [grpc.StatusCode.UNAVAILABLE] * 2
        result = self.client.complete(prompt="p", max_new_tokens=2)
        self.assertEqual(result.token_ids, [100, 101])
        self.assertEqual(self.fake.jamba.unary_calls, 3)

    def test_retries_stop_at_the_deadline(self):
        def script(request, context, call_number):
            context.abort(grpc.StatusCode.UNAVAILABLE, "down")
            yield
        self.fake.jamba.generate_script = script
        client = Client(self.fake.target, deadline=0.5, max_attempts=1000,
                        initial_backoff=0.05, max_backoff=0.05)
        self.addCleanup(client.close)
        start = time.monotonic()
        with self.assertRaises(JambaError) as caught:
            list(client.generate(prompt="p"))
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertLess(time.monotonic() - start, 0.5 + WAIT_S / 2)
        # Each wait is at least 25 ms, so a 0.5 s budget allows about 20 calls, not 1000.
        self.assertLess(self.fake.jamba.generate_calls, 40)
        self.assertGreater(self.fake.jamba.generate_calls, 1)

    def test_no_retry_without_time_for_an_answer(self):
        # The server takes 0.1 s to say UNAVAILABLE and the deadline is 0.38 s: after the first
        # call ~0.28 s are left, enough for another; after the second at most ~0.18 s, less
        # than twice what a call takes. A rule that retries while any time is left starts a
        # fourth call with ~0.07 s left, which ends DEADLINE_EXCEEDED.
        def script(request, context, call_number):
            time.sleep(0.1)
            context.abort(grpc.StatusCode.UNAVAILABLE, "down")
            yield
        self.fake.jamba.generate_script = script
        client = Client(self.fake.target, deadline=0.38, max_attempts=1000,
                        initial_backoff=0.001, max_backoff=0.001)
        self.addCleanup(client.close)
        with self.assertRaises(JambaError) as caught:
            list(client.generate(prompt="p"))
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(self.fake.jamba.generate_calls, 2)

    def test_unreachable_server_is_unavailable_after_retries(self):
        client = Client("127.0.0.1:%d" % free_port(), max_attempts=2, initial_backoff=0.01)
        self.addCleanup(client.close)
        with self.assertRaises(JambaError) as caught:
            client.tokenize("x")
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAVAILABLE)


class ErrorTest(FakeServerTest):

    def test_tls_client_does_not_talk_plaintext(self):
        # The fake serves plaintext: a client that really uses TLS fails the handshake.
        client = Client(self.fake.target, tls=True, max_attempts=1, deadline=WAIT_S)
        self.addCleanup(client.close)
        with self.assertRaises(JambaError) as caught:
            client.tokenize("x")
        self.assertEqual(caught.exception.code, grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(self.client.tokenize("x"), [120])  # while plaintext works

    def test_invalid_argument_is_mapped(self):
        with self.assertRaises(JambaError) as caught:
            list(self.client.generate(prompt="p", top_p=1.5))
        error = caught.exception
        self.assertEqual(error.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(error.details, "top_p must be in (0, 1], got 1.5")
        self.assertIn("INVALID_ARGUMENT", str(error))
        self.assertIsInstance(error.__cause__, grpc.RpcError)
        self.assertEqual(self.fake.jamba.generate_calls, 1)
        with self.assertRaises(JambaError) as caught:
            self.client.complete(prompt="p", top_p=0)
        self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(self.fake.jamba.unary_calls, 1)

    def test_deadline_exceeded_is_not_retried(self):
        release = threading.Event()
        self.addCleanup(release.set)

        def script(request, context, call_number):
            release.wait(WAIT_S)
            yield from default_chunks(request)
        self.fake.jamba.generate_script = script
        with self.assertRaises(JambaError) as caught:
            list(self.client.generate(prompt="p", deadline=0.2))
        self.assertEqual(caught.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertEqual(self.fake.jamba.generate_calls, 1)

    def test_unary_method_errors_are_mapped(self):
        with self.assertRaises(JambaError) as caught:
            self.client.detokenize([0x110000])  # not a code point in the fake's "tokenizer"
        self.assertEqual(caught.exception.code, grpc.StatusCode.INVALID_ARGUMENT)


class CancellationTest(FakeServerTest):
    CLIENT_DEADLINE = None  # a deadline would end the calls too, and look like a cancel

    def install_script(self, finish):
        """A stream that sends one chunk, then (unless `finish`) waits until the RPC is gone.

        Returns events: `ended` when the RPC terminated, `cancelled` when it terminated before
        the handler finished, i.e. the client cancelled it. Observed in the termination
        callback: after a cancellation gRPC may never resume the handler past its yield.
        """
        ended, cancelled = threading.Event(), threading.Event()
        release = threading.Event()
        self.addCleanup(release.set)

        def script(request, context, call_number):
            finished = []

            def on_termination():
                if not finished:
                    cancelled.set()
                ended.set()
            context.add_callback(on_termination)
            yield generate_pb2.GenerateChunk(token_ids=[100], text="<100>")
            if not finish:
                release.wait(3 * WAIT_S)  # only a cancellation ends this call in time
            finished.append(True)
        self.fake.jamba.generate_script = script
        return ended, cancelled

    def test_closing_the_generator_cancels_the_call(self):
        ended, cancelled = self.install_script(finish=False)
        # Hold every call object, so that only an explicit cancel (not gRPC's cancel-on-
        # garbage-collection) can end the RPC.
        calls = []
        real_generate = self.client._stub.Generate

        def keep(*args, **kwargs):
            calls.append(real_generate(*args, **kwargs))
            return calls[-1]
        self.client._stub.Generate = keep
        stream = self.client.generate(prompt="p")
        self.assertEqual(next(stream).token_ids, [100])
        self.assertFalse(ended.is_set())
        stream.close()
        self.assertTrue(cancelled.wait(WAIT_S), "the server never saw the cancellation")

    def test_breaking_out_of_a_loop_cancels_the_call(self):
        ended, cancelled = self.install_script(finish=False)
        for chunk in self.client.generate(prompt="p"):
            break
        self.assertEqual(chunk.token_ids, [100])
        self.assertTrue(cancelled.wait(WAIT_S), "the server never saw the cancellation")

    def test_a_stream_read_to_the_end_is_not_cancelled(self):
        # The control for the two above: the fake can tell a cancellation from an ending.
        ended, cancelled = self.install_script(finish=True)
        self.assertEqual([c.token_ids for c in self.client.generate(prompt="p")], [[100]])
        self.assertTrue(ended.wait(WAIT_S))
        self.assertFalse(cancelled.is_set())


class OtherMethodsTest(FakeServerTest):

    def test_tokenize_and_detokenize(self):
        self.assertEqual(self.client.tokenize("ab"), [97, 98])
        self.assertEqual(self.client.tokenize("ab", add_special_tokens=True), [1, 97, 98])
        self.assertEqual(self.client.tokenize("\u00e9"), [0xE9])
        self.assertEqual(self.client.detokenize([1, 104, 105]), "\x01hi")
        self.assertEqual(self.client.detokenize([1, 104, 105], skip_special_tokens=True), "hi")

    def test_model_info(self):
        info = self.client.model_info()
        self.assertEqual(info.architecture, "jamba")
        self.assertEqual([(layer.mixer, layer.ffn) for layer in info.layers],
                         [("mamba", "mlp"), ("attention", "moe")])
        self.assertEqual((info.context_limit, info.vocab_size, info.fingerprint),
                         (4096, 512, "fake"))
        self.assertEqual([(w.role, w.layer_begin, w.layer_end) for w in info.workers],
                         [("layer", 0, 2), ("expert", 0, 0)])
        self.assertEqual([(e.layer, e.expert) for e in info.workers[1].experts], [(1, 3)])

    def test_health(self):
        self.assertTrue(self.client.health())
        self.fake.health.statuses[""] = health_pb2.HealthCheckResponse.NOT_SERVING
        self.assertFalse(self.client.health())
        self.assertFalse(self.client.health("no.such.Service"))
        self.fake.stop()
        self.assertFalse(self.client.health())


class CliTest(FakeServerTest):

    def run_cli(self, *args):
        return subprocess.run([sys.executable, "-m", "jamba_client", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=WAIT_S * 3)

    def test_generate_json(self):
        done = self.run_cli("generate", "--target", self.fake.target, "--prompt", "hey",
                            "--max-new-tokens", "3", "--temperature", "0", "--json")
        self.assertEqual(done.returncode, 0, done.stderr)
        chunks = [json.loads(line) for line in done.stdout.splitlines()]
        self.assertEqual([c["token_ids"] for c in chunks], [[100, 101], [102], []])
        self.assertEqual(chunks[-1]["finish_reason"], "length")
        self.assertEqual(chunks[-1]["usage"], {"prompt_tokens": 3, "completion_tokens": 3})
        sampling = self.fake.jamba.requests[0].sampling
        self.assertTrue(sampling.HasField("temperature"))
        self.assertFalse(sampling.HasField("top_p"))

    def test_generate_text(self):
        done = self.run_cli("generate", "--target", self.fake.target, "--prompt", "hey",
                            "--max-new-tokens", "2")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, "<100><101>\n")

    def test_rpc_error_exits_1(self):
        done = self.run_cli("generate", "--target", self.fake.target, "--prompt", "hey",
                            "--top-p", "1.5")
        self.assertEqual(done.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", done.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
