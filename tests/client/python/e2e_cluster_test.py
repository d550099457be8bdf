#!/usr/bin/env python3
"""End to end: a real local cluster (`jambactl cluster up`) driven through jamba_client.

  PYTHONPATH=<build>/python python3 tests/client/python/e2e_cluster_test.py \
      --jambactl <build>/cli/jambactl [--model models/jamba-demo]

(--jambactl defaults to $JAMBACTL.) What `cluster up` must do, which this checks: print
`cluster ready: gateway 127.0.0.1:<port>` on stdout once every process is healthy (logs may
come before), and on SIGTERM stop every process it started and exit 0.

Then, through the client: health() is True; model_info().architecture is "jamba"; a greedy
16-token completion of "In the beginning" streams chunks whose token ids and texts concatenate
to what complete() answers, ending with finish_reason "length" and 16 completion tokens; top_p
1.5 is rejected with INVALID_ARGUMENT; SIGTERM stops the cluster with exit status 0 within
30 s. Exit status 0 when all of that holds.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc

from jamba_client import Client, JambaError

READY_RE = re.compile(r"cluster ready: gateway (\S+:\d+)")
READY_TIMEOUT_S = 120
SHUTDOWN_TIMEOUT_S = 30
CALL_DEADLINE_S = 120  # one call on the CPU demo model; generous for a loaded CI machine

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(message):
    sys.stderr.write("e2e: %s\n" % message)
    sys.stderr.flush()


class Cluster:
    """`jambactl cluster up` as a child in its own process group. Its output is echoed to our
    stderr (prefixed) and scanned for the ready line."""

    def __init__(self, jambactl, model, port, extra_args=()):
        command = [jambactl, "cluster", "up", "--model", model, "--layer-workers", "2",
                   "--expert-workers", "2", "--port", str(port)] + list(extra_args)
        log("starting: %s" % " ".join(command))
        # Own session: a failed run can still take down whatever the cluster left behind.
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, bufsize=1,
                                        start_new_session=True)
        self.target = None
        self._lines = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            sys.stderr.write("[cluster] " + line)
            self._lines.append(line)
            if self.target is None:
                match = READY_RE.search(line)
                if match:
                    self.target = match.group(1)
                    self._ready.set()
        self._ready.set()  # output closed: the process is gone (or closed stdout)

    def output(self):
        """What the cluster printed so far (its processes' logs, prefixed with their names)."""
        return "".join(list(self._lines))

    def wait_ready(self, timeout):
        if not self._ready.wait(timeout):
            raise AssertionError("no `cluster ready` line within %d s" % timeout)
        if self.target is None:
            raise AssertionError("cluster up ended before it was ready (exit status %s)" %
                                 self.process.wait(5))
        return self.target

    def terminate(self, timeout):
        """SIGTERM; returns the exit status, or None if it did not exit within `timeout`."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill_group(self):
        """SIGKILL the process group we created (its leader included)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    log("ok: " + message)


def run_checks(client):
    check(client.health() is True, "health() is True")

    info = client.model_info()
    check(info.architecture == "jamba", "model_info().architecture == 'jamba' (got %r)" %
          info.architecture)

    greedy = dict(temperature=0, max_new_tokens=16)
    chunks = list(client.generate(prompt="In the beginning", **greedy))
    result = client.complete(prompt="In the beginning", **greedy)
    streamed_ids = [i for c in chunks for i in c.token_ids]
    streamed_text = "".join(c.text for c in chunks)
    log("complete(): %r %r" % (result.token_ids, result.text))
    check(streamed_ids == result.token_ids,
          "streamed token ids %r == complete()'s %r" % (streamed_ids, result.token_ids))
    check(streamed_text == result.text,
          "streamed text %r == complete()'s %r" % (streamed_text, result.text))
    check(len(result.token_ids) == 16, "16 tokens generated (got %d)" % len(result.token_ids))
    check(chunks and chunks[-1].finish_reason == "length",
          "last chunk's finish_reason is 'length' (got %r)" %
          (chunks[-1].finish_reason if chunks else None))
    check(all(c.finish_reason is None for c in chunks[:-1]),
          "no finish_reason before the last chunk")
    check(result.finish_reason == "length",
          "complete().finish_reason == 'length' (got %r)" % result.finish_reason)
    for name, usage in (("stream", chunks[-1].usage), ("complete()", result.usage)):
        check(usage is not None and usage.completion_tokens == 16,
              "%s usage.completion_tokens == 16 (got %r)" % (name, usage))

    try:
        list(client.generate(prompt="In the beginning", top_p=1.5))
    except JambaError as e:
        check(e.code == grpc.StatusCode.INVALID_ARGUMENT,
              "top_p=1.5 -> INVALID_ARGUMENT (got %s: %s)" % (e.code, e.details))
    else:
        raise AssertionError("top_p=1.5 was accepted")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jambactl", default=os.environ.get("JAMBACTL"),
                        help="path of the jambactl binary (default: $JAMBACTL)")
    parser.add_argument("--model", default=os.path.join(REPO_ROOT, "models", "jamba-demo"))
    parser.add_argument("--port", type=int, default=0, help="gateway port (0: a free one)")
    parser.add_argument("--pipelines", type=int, default=1,
                        help="cluster up --pipelines; >1 also checks that model_info() lists "
                             "every pipeline's layer workers and that both complete alike")
    args = parser.parse_args()
    if not args.jambactl:
        parser.error("no jambactl: give --jambactl or set JAMBACTL")
    if not os.access(args.jambactl, os.X_OK):
        log("FAILED: %s is not an executable (build the jambactl target)" % args.jambactl)
        return 1

    extra = ["--pipelines", str(args.pipelines)] if args.pipelines > 1 else []
    cluster = Cluster(args.jambactl, args.model, args.port or free_port(), extra)

    def checks(client):
        run_checks(client)
        if args.pipelines > 1:
            check_pipelines(client, args.pipelines)

    return run_cluster(cluster, checks)


def check_pipelines(client, pipelines):
    """Every pipeline's two stages are listed; concurrent greedy requests (spread over the
    pipelines by the gateway) all give the tokens one request alone gives."""
    info = client.model_info()
    layer = [w for w in info.workers if w.role == "layer"]
    check(sorted({w.pipeline for w in layer}) == list(range(pipelines)),
          "model_info() lists layer workers of pipelines %r" % sorted({w.pipeline for w in layer}))
    check(len(layer) == 2 * pipelines, "%d layer workers (got %d)" % (2 * pipelines, len(layer)))
    greedy = dict(temperature=0, max_new_tokens=12)
    prompts = ["And God said", "In the beginning", "The LORD is my", "Blessed are"]
    alone = [client.complete(prompt=p, **greedy).token_ids for p in prompts]
    results = [None] * len(prompts)

    def run(i):
        results[i] = client.complete(prompt=prompts[i], **greedy).token_ids

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(results == alone, "concurrent completions over %d pipelines equal each alone" %
          pipelines)


def run_cluster(cluster, checks, ready_timeout=READY_TIMEOUT_S, call_deadline=CALL_DEADLINE_S,
                shutdown_timeout=SHUTDOWN_TIMEOUT_S):
    """Waits for `cluster`, runs checks(client) against its gateway, then stops it with
    SIGTERM (which must give exit status 0). Returns the test's exit status."""
    try:
        target = cluster.wait_ready(ready_timeout)
        log("cluster ready at %s" % target)
        with Client(target, deadline=call_deadline) as client:
            checks(client)
        started = time.monotonic()
        status = cluster.terminate(shutdown_timeout)
        check(status == 0, "SIGTERM: exit status 0 within %d s (got %s after %.1f s)" %
              (shutdown_timeout, status, time.monotonic() - started))
    except (AssertionError, JambaError) as e:
        log("FAILED: %s" % e)
        return 1
    finally:
        # Whatever is left of the group we started (nothing, if SIGTERM worked).
        cluster.kill_group()
    log("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
