#!/usr/bin/env python3
"""A whole cluster on the (emulated) CUDA device: `jambactl cluster up --device cuda` with the
layer and expert workers built for the CUDA emulator (kernels/cuda/emulator), on a fixture
checkpoint, driven through jamba_client.

  PYTHONPATH=<build>/python:tests/client/python python3 emulated_cluster_test.py \
      --jambactl <build>/cli/jambactl --bin-dir <build>/cuda-emulator \
      --model tests/fixtures/models/jamba_moe_gqa

What it checks: every expert and layer worker reports device cuda:0; a greedy completion of
the fixture's prompt gives transformers' greedy tokens (the fixture's reference, whose
smallest top-1 margin is far above the CUDA/CPU rounding differences), computed by the CUDA
kernels of both pipeline stages and the expert workers with the token picked on the last
stage's device; seeded sampled requests (temperature / top-k / top-p / min-p, sampled on the
device) give the same tokens twice, and different ones for another seed.
Then a cluster with `--device cuda,cpu`: the devices are dealt round-robin (expert 0 and
layer 0 on cuda:0, expert 1 and layer 1 on the CPU), and this mixed pipeline gives
transformers' greedy tokens too.
"""

import argparse
import json
import os
import re
import struct
import sys

import numpy as np

from e2e_cluster_test import Cluster, check, free_port, run_cluster

READY_TIMEOUT_S = 300
CALL_DEADLINE_S = 300


def read_reference(path):
    """The int32 tensors of a safetensors file, by name."""
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "I32":
            continue
        begin, end = t["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype="<i4").tolist()
    return out


def worker_devices(cluster_log):
    """{"expert-0": "cuda:0", ...}: the device each worker reported at start."""
    return dict(re.findall(r"^\[((?:expert|layer)-\d+)\] device (\S+)", cluster_log, re.M))


def check_greedy(client, reference):
    prompt, greedy = reference["prompt_ids"], reference["greedy_ids"]
    result = client.complete(token_ids=prompt, temperature=0, max_new_tokens=len(greedy),
                             ignore_eos=True)
    check(result.token_ids == greedy,
          "greedy tokens == transformers' (%r vs %r)" % (result.token_ids, greedy))


def run_checks(client, reference, cluster_log):
    devices = worker_devices(cluster_log)
    check(len(devices) == 4 and all(d == "cuda:0" for d in devices.values()),
          "2 expert and 2 layer workers on cuda:0 (got %r)" % devices)

    check_greedy(client, reference)
    prompt = reference["prompt_ids"]

    sampled = dict(temperature=0.8, top_k=40, top_p=0.9, min_p=0.02, max_new_tokens=16,
                   ignore_eos=True)
    a = client.complete(token_ids=prompt, seed=7, **sampled)
    b = client.complete(token_ids=prompt, seed=7, **sampled)
    c = client.complete(token_ids=prompt, seed=8, **sampled)
    check(len(a.token_ids) == 16 and a.token_ids == b.token_ids,
          "seed 7 twice: the same 16 tokens (%r, %r)" % (a.token_ids, b.token_ids))
    check(a.token_ids != c.token_ids, "seed 8 samples other tokens (%r)" % c.token_ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jambactl", required=True)
    parser.add_argument("--bin-dir", required=True, help="the emulated workers' folder")
    parser.add_argument("--model", required=True, help="a fixture checkpoint with reference")
    args = parser.parse_args()
    reference = read_reference(os.path.join(args.model, "reference.safetensors"))

    cluster = Cluster(args.jambactl, args.model, free_port(),
                      ["--device", "cuda", "--bin-dir", args.bin_dir, "--threads", "1"])
    status = run_cluster(cluster, lambda client: run_checks(client, reference, cluster.output()),
                         ready_timeout=READY_TIMEOUT_S, call_deadline=CALL_DEADLINE_S)
    if status != 0:
        return status

    mixed = Cluster(args.jambactl, args.model, free_port(),
                    ["--device", "cuda,cpu", "--bin-dir", args.bin_dir, "--threads", "1"])

    def mixed_checks(client):
        want = {"expert-0": "cuda:0", "expert-1": "cpu", "layer-0": "cuda:0", "layer-1": "cpu"}
        got = worker_devices(mixed.output())
        check(got == want, "--device cuda,cpu dealt round-robin: %r (got %r)" % (want, got))
        check_greedy(client, reference)

    return run_cluster(mixed, mixed_checks, ready_timeout=READY_TIMEOUT_S,
                       call_deadline=CALL_DEADLINE_S)


if __name__ == "__main__":
    sys.exit(main())
