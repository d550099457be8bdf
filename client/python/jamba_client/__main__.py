"""Command line: python3 -m jamba_client {generate,health,model-info} --target HOST:PORT ...

  generate  streams the completion's text to stdout (--json: one JSON object per chunk)
  health    exit status 0 when the server is SERVING, 1 otherwise
  model-info  the ModelInfo answer as JSON

RPC failures print "jamba_client: CODE: details" on stderr and exit 1.
"""

import argparse
import dataclasses
import json
import sys

from jamba_client.client import Client
from jamba_client.errors import JambaError


def _parser():
    parser = argparse.ArgumentParser(prog="python3 -m jamba_client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, help_text):
        p = commands.add_parser(name, help=help_text)
        p.add_argument("--target", required=True, help="the gateway's HOST:PORT")
        p.add_argument("--deadline", type=float, default=None, help="seconds for the call")
        return p

    gen = command("generate", "stream a completion")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--max-new-tokens", type=int, default=None)
    gen.add_argument("--temperature", type=float, default=None, help="0: greedy")
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--json", action="store_true", help="one JSON object per chunk")
    command("health", "check grpc.health.v1")
    command("model-info", "print the model and cluster layout as JSON")
    return parser


def _generate(client, args, out):
    stream = client.generate(prompt=args.prompt, max_new_tokens=args.max_new_tokens,
                             temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                             seed=args.seed)
    try:
        for chunk in stream:
            if args.json:
                out.write(json.dumps(dataclasses.asdict(chunk)) + "\n")
            else:
                out.write(chunk.text)
            out.flush()
    finally:
        stream.close()  # on Ctrl-C too: cancels the call on the server
    if not args.json:
        out.write("\n")
    return 0


def main(argv=None, out=sys.stdout):
    args = _parser().parse_args(argv)
    try:
        with Client(args.target, deadline=args.deadline) as client:
            if args.command == "generate":
                return _generate(client, args, out)
            if args.command == "health":
                serving = client.health()
                out.write("SERVING\n" if serving else "NOT_SERVING\n")
                return 0 if serving else 1
            if args.command == "model-info":
                out.write(json.dumps(dataclasses.asdict(client.model_info()), indent=2) + "\n")
                return 0
    except JambaError as e:
        sys.stderr.write("jamba_client: %s\n" % e)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
