"""Stands in for `jambactl cluster up` to test e2e_cluster_test.py itself (the real command
is checked by the `cluster`-labelled CTest test). Follows the same contract: logs, then
`cluster ready: gateway 127.0.0.1:<port>` on stdout, serving fake_jamba_server until SIGTERM or
SIGINT, then exit 0.

  fake_jambactl.py cluster up --model DIR --layer-workers N --expert-workers N --port PORT
"""

import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fake_jamba_server import RunningFake  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["cluster"])
    parser.add_argument("subcommand", choices=["up"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--layer-workers", type=int, required=True)
    parser.add_argument("--expert-workers", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    # Blocked before the server starts its threads (they inherit the mask), then awaited.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    print("fake cluster: model %s, %d layer workers, %d expert workers" %
          (args.model, args.layer_workers, args.expert_workers), flush=True)
    fake = RunningFake(port=args.port)
    print("cluster ready: gateway %s" % fake.target, flush=True)
    signal.sigwait(stop_signals)
    fake.stop()
    print("fake cluster: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
