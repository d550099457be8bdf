#!/usr/bin/env python3
"""The cluster's metrics, the shipped Prometheus config and the Grafana dashboard, end to end.

  PYTHONPATH=<build>/python python3 tests/metrics/prometheus_dashboard_test.py \
      --build-dir <build> [--model models/jamba-demo] [--prometheus prometheus]

Starts a real cluster on loopback with metrics on (2 expert workers, 2 layer workers, the
gateway; each server with --metrics-listen 127.0.0.1:0, its metrics address read from the
"metrics on HOST:PORT" line it prints), then checks:
  1. `promtool check metrics` accepts every process's /metrics text;
  2. deploy/prometheus/prometheus.yml (scrape interval set to 1s, its file_sd target files
     filled with the processes' metrics addresses) passes `promtool check config`, and a real
     Prometheus scrapes every process (up == 1 for 5 targets);
  3. after a known load (REQUESTS greedy requests of TOKENS tokens with ignore_eos, streamed
     through the Python client) and a scrape that saw all of it, Prometheus's HTTP API answers:
     jamba_generation_tokens_total == tokens the client received; jamba_requests_total{code="OK"}
     == REQUESTS; expert tokens computed (expert workers) == expert rows sent (layer workers)
     == top-k x MoE-layer token rows forwarded (derived from config.json and the layer workers'
     jamba_forward_tokens_total); jamba_build_info for all 5 processes;
  4. every query of deploy/grafana/jamba-dashboard.json (Grafana variables substituted) returns
     status "success" from that Prometheus, and the key panels return data.
Every process runs in one process group of its own that is killed on the way out.
Exit status 0 when all of that holds.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from jamba_client import Client

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REQUESTS = 5
TOKENS = 12
START_TIMEOUT_S = 120
PROMETHEUS_TIMEOUT_S = 60
CALL_DEADLINE_S = 120

# Grafana-only tokens Prometheus does not know, and what stands in for them.
GRAFANA_SUBSTITUTIONS = [
    ("$__rate_interval", "1m"), ("$__interval", "1m"), ("$__range", "5m"),
    ("${instance}", ".*"), ("$instance", ".*"),
]
# Panels that must return data after the load (by title).
KEY_PANELS = [
    "Worker health (up)", "Generation throughput", "Requests by outcome", "Time to first token",
    "Time per output token", "Request duration (end to end)", "Queue and running batch",
    "KV cache blocks in use", "Mamba state slots in use", "Resident memory per process",
    "Expert load (routed tokens/s by layer and expert)",
    "Expert imbalance (max / mean over a layer's experts)",
]


def log(message):
    sys.stderr.write("prometheus_dashboard: %s\n" % message)
    sys.stderr.flush()


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    log("ok: " + message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


class Process:
    """A server child: output echoed to our stderr (prefixed), scanned for the "metrics on" and
    "listening on" lines."""

    def __init__(self, name, argv, pgid):
        self.name = name
        env = dict(os.environ)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as jambactl cluster up does
        env.setdefault("OMP_NUM_THREADS", "1")
        # All children in the group of the first one, so one killpg takes every process down.
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, bufsize=1, env=env,
            process_group=0 if pgid is None else pgid)
        self.listening = None
        self.metrics = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            sys.stderr.write("[%s] %s" % (self.name, line))
            text = line.strip()
            if text.startswith("metrics on "):
                self.metrics = text[len("metrics on "):]
            elif text.startswith("listening on "):
                self.listening = text[len("listening on "):]
                self._ready.set()
        self._ready.set()

    def wait_ready(self):
        if not self._ready.wait(START_TIMEOUT_S) or self.listening is None:
            raise AssertionError("%s did not print 'listening on' within %d s (or exited)" %
                                 (self.name, START_TIMEOUT_S))
        if self.metrics is None:
            raise AssertionError("%s printed no 'metrics on' line" % self.name)


class Cluster:
    def __init__(self, model):
        self.procs = []
        self.pgid = None
        self.model = model
        config = json.load(open(os.path.join(model, "config.json")))
        self.config = config
        n_layers = config["num_hidden_layers"]
        experts = config.get("num_experts", 1)
        self.moe_layers = [i for i in range(n_layers) if experts > 1 and
                           i % config["expert_layer_period"] == config["expert_layer_offset"]]
        half = experts // 2
        specs = [";".join("%d:%s" % (l, ",".join(str(e) for e in ids)) for l in self.moe_layers)
                 for ids in (range(half), range(half, experts))]
        self.specs = specs
        self.layer_ranges = [(0, n_layers // 2), (n_layers // 2, n_layers)]

    def start(self, build_dir):
        """Starts every process (expert workers, layer workers, gateway), each waited for."""
        model, specs = self.model, self.specs
        common = ["--model", model, "--threads", "1", "--metrics-listen", "127.0.0.1:0"]
        expert_bin = os.path.join(build_dir, "expert-worker", "jamba-expert-worker")
        layer_bin = os.path.join(build_dir, "layer-worker", "jamba-layer-worker")
        gateway_bin = os.path.join(build_dir, "gateway", "jamba-gateway")
        experts_at = [self._start("expert-%d" % i,
                                  [expert_bin, "--experts", spec, "--listen", "127.0.0.1:0"] +
                                  common) for i, spec in enumerate(specs)]
        layers_at = [self._start("layer-%d" % i,
                                 [layer_bin, "--layers", "%d:%d" % r, "--listen", "127.0.0.1:0",
                                  "--expert-workers", ",".join(experts_at)] + common)
                     for i, r in enumerate(self.layer_ranges)]
        self.gateway = self._start("gateway",
                                   [gateway_bin, "--model", model, "--layer-workers",
                                    ",".join(layers_at), "--listen", "127.0.0.1:0",
                                    "--metrics-listen", "127.0.0.1:0"])

    def _start(self, name, argv):
        log("starting %s: %s" % (name, " ".join(argv)))
        p = Process(name, argv, self.pgid)
        if self.pgid is None:
            self.pgid = p.process.pid
        self.procs.append(p)
        p.wait_ready()
        return p.listening

    def metrics_by_job(self):
        jobs = {"expert_worker": [], "layer_worker": [], "gateway": []}
        for p in self.procs:
            job = ("gateway" if p.name == "gateway" else
                   "layer_worker" if p.name.startswith("layer") else "expert_worker")
            jobs[job].append(p.metrics)
        return jobs

    def kill(self):
        if self.pgid is not None:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs:
            p.process.wait()


class Prometheus:
    def __init__(self, binary, config_dir):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = open(os.path.join(config_dir, "prometheus.log"), "w")
        self.process = subprocess.Popen(
            [binary, "--config.file", os.path.join(config_dir, "prometheus.yml"),
             "--storage.tsdb.path", os.path.join(config_dir, "data"),
             "--web.listen-address", "127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.log_path = self.log.name

    def query(self, expr):
        """The decoded JSON answer (status success or error) of an instant query."""
        url = "%s/api/v1/query?%s" % (self.url, urllib.parse.urlencode({"query": expr}))
        try:
            return json.loads(http_get(url))
        except urllib.error.HTTPError as e:  # 400/422: bad query, body is the JSON error
            return json.loads(e.read().decode())

    def value(self, expr):
        """The single sample of `expr` as a float; AssertionError unless exactly one."""
        answer = self.query(expr)
        if answer["status"] != "success":
            raise AssertionError("query %s: %s" % (expr, answer.get("error")))
        result = answer["data"]["result"]
        if len(result) != 1:
            raise AssertionError("query %s: want 1 series, got %r" % (expr, result))
        return float(result[0]["value"][1])

    def kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.log.close()


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %d s waiting for %s" % (timeout, what))
        time.sleep(0.5)  # polling an external server; no event to wait on


def write_config(config_dir, jobs):
    """The shipped config with a 1s interval; its file_sd files with the real addresses."""
    text = open(os.path.join(REPO_ROOT, "deploy", "prometheus", "prometheus.yml")).read()
    text, n = re.subn(r"scrape_interval: \S+", "scrape_interval: 1s", text)
    check(n >= 1, "the shipped config has a scrape_interval to set")
    text = re.sub(r"scrape_timeout: \S+", "scrape_timeout: 1s", text)
    open(os.path.join(config_dir, "prometheus.yml"), "w").write(text)
    files = re.findall(r"files: \[(\S+)\]", text)
    check(sorted(files) == sorted("targets/%s.json" % j for j in jobs),
          "the shipped config reads one file_sd file per job (%s)" % files)
    os.makedirs(os.path.join(config_dir, "targets"))
    for job, addresses in jobs.items():
        with open(os.path.join(config_dir, "targets", "%s.json" % job), "w") as f:
            json.dump([{"targets": addresses}], f)


def dashboard_queries():
    dashboard = json.load(open(os.path.join(REPO_ROOT, "deploy", "grafana",
                                            "jamba-dashboard.json")))
    check(dashboard["uid"] == "jamba-serving", "dashboard uid jamba-serving")
    ids = [p["id"] for p in dashboard["panels"]]
    check(len(ids) == len(set(ids)), "dashboard panel ids are unique")
    out = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        check(panel.get("datasource", {}).get("uid") == "${DS_PROMETHEUS}",
              "panel %r uses the ${DS_PROMETHEUS} datasource" % panel["title"])
        targets = panel.get("targets", [])
        if not targets:
            raise AssertionError("panel %r has no queries" % panel["title"])
        for target in targets:
            expr = target["expr"]
            for token, value in GRAFANA_SUBSTITUTIONS:
                expr = expr.replace(token, value)
            if "$" in expr:
                raise AssertionError("panel %r: unsubstituted variable in %r" %
                                     (panel["title"], expr))
            out.append((panel["title"], expr))
    return out


def run_load(target):
    streamed = 0
    with Client(target, deadline=CALL_DEADLINE_S) as client:
        for i in range(REQUESTS):
            chunks = list(client.generate(prompt="In the beginning God created %d" % i,
                                          temperature=0, max_new_tokens=TOKENS, ignore_eos=True))
            n = sum(len(c.token_ids) for c in chunks)
            check(n == TOKENS and chunks[-1].finish_reason == "length",
                  "request %d streamed %d tokens, finish %s" % (i, n, chunks[-1].finish_reason))
            streamed += n
    return streamed


def run(args, tmp):
    cluster = Cluster(args.model)
    prometheus = None
    try:
        cluster.start(args.build_dir)
        jobs = cluster.metrics_by_job()
        for p in cluster.procs:
            text = http_get("http://%s/metrics" % p.metrics)
            lint = subprocess.run([args.promtool, "check", "metrics"], input=text, text=True,
                                  capture_output=True)
            check(lint.returncode == 0 and not lint.stdout.strip(),
                  "promtool check metrics accepts %s's /metrics (%s%s)" %
                  (p.name, lint.stdout.strip(), lint.stderr.strip()))

        write_config(tmp, jobs)
        lint = subprocess.run([args.promtool, "check", "config",
                               os.path.join(tmp, "prometheus.yml")],
                              capture_output=True, text=True)
        check(lint.returncode == 0, "promtool check config: %s%s" % (lint.stdout, lint.stderr))
        prometheus = Prometheus(args.prometheus, tmp)

        def all_up():
            try:
                answer = prometheus.query("sum(up)")
                return (answer["status"] == "success" and answer["data"]["result"] and
                        float(answer["data"]["result"][0]["value"][1]) == 5)
            except (OSError, ValueError):
                return False
        wait_for("Prometheus to scrape all 5 processes", all_up, PROMETHEUS_TIMEOUT_S)
        check(prometheus.value('count(up{job="gateway"} == 1)') == 1 and
              prometheus.value('count(up{job="layer_worker"} == 1)') == 2 and
              prometheus.value('count(up{job="expert_worker"} == 1)') == 2,
              "up == 1 for 1 gateway, 2 layer workers, 2 expert workers")
        check(prometheus.value('count(up{component=~"gateway|layer.worker|expert.worker"})') == 5,
              "every target has the component label the dashboard's health panel selects on")

        streamed = run_load(cluster.gateway)
        check(streamed == REQUESTS * TOKENS, "client received %d tokens" % streamed)
        # The gateway counts at request end; wait until a scrape has every request.
        wait_for("a scrape after the load",
                 lambda: prometheus.query('sum(jamba_requests_total{job="gateway"})')["data"]
                 ["result"] and prometheus.value('sum(jamba_requests_total{job="gateway"})') ==
                 REQUESTS, PROMETHEUS_TIMEOUT_S)
        # One more scrape of every process (its timestamp after now) so the workers' counters,
        # updated before the gateway's, are in too.
        after = time.time()
        wait_for("a scrape of every process after the load",
                 lambda: prometheus.value('min(timestamp(up))') > after + 0.1,
                 PROMETHEUS_TIMEOUT_S)

        generated = prometheus.value('sum(jamba_generation_tokens_total{job="gateway"})')
        check(generated == streamed, "jamba_generation_tokens_total %g == %d tokens streamed" %
              (generated, streamed))
        ok = prometheus.value('sum(jamba_requests_total{job="gateway", code="OK"})')
        check(ok == REQUESTS, 'jamba_requests_total{code="OK"} %g == %d' % (ok, REQUESTS))
        computed = prometheus.value('sum(jamba_expert_tokens_total{job="expert_worker"})')
        sent = prometheus.value('sum(jamba_expert_rows_sent_total{job="layer_worker"})')
        check(computed == sent and computed > 0,
              "expert tokens computed %g == expert rows sent %g (> 0)" % (computed, sent))
        # Each layer worker forwards the same token rows through each of its MoE layers, and each
        # row goes to top-k experts.
        top_k = cluster.config["num_experts_per_tok"]
        expected = 0
        for p, (begin, end) in zip(cluster.procs[2:4], cluster.layer_ranges):
            moe = len([l for l in cluster.moe_layers if begin <= l < end])
            rows = prometheus.value('sum(jamba_forward_tokens_total{instance="%s"})' % p.metrics)
            expected += top_k * moe * rows
        check(computed == expected,
              "expert tokens %g == top-k x token rows through MoE layers %g" %
              (computed, expected))
        for job, n in (("gateway", 1), ("layer_worker", 2), ("expert_worker", 2)):
            count = prometheus.value('count(jamba_build_info{job="%s"})' % job)
            check(count == n, "jamba_build_info from %d %s process(es)" % (n, job))

        non_empty = set()
        for title, expr in dashboard_queries():
            answer = prometheus.query(expr)
            if answer["status"] != "success":
                raise AssertionError("panel %r query %r: %s" % (title, expr, answer.get("error")))
            if answer["data"]["result"]:
                non_empty.add(title)
        log("every dashboard query succeeds")
        for title in KEY_PANELS:
            check(title in non_empty, "panel %r has data" % title)
    finally:
        cluster.kill()
        if prometheus is not None:
            prometheus.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", required=True)
    parser.add_argument("--model", default=os.path.join(REPO_ROOT, "models", "jamba-demo"))
    parser.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    parser.add_argument("--promtool", default=shutil.which("promtool") or "promtool")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="jamba-prometheus-")
    try:
        run(args, tmp)
    except AssertionError as e:
        log("FAILED: %s" % e)
        log_path = os.path.join(tmp, "prometheus.log")
        if os.path.exists(log_path):
            sys.stderr.write(open(log_path).read()[-4000:])
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
