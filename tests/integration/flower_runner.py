"""A stand-in governed runner for the Flower deployment tests (run as a script).

It answers through :func:`federation.flower.runtime.serve_task` exactly as the node's
runner does, but with a fixed ClientApp, so the tests exercise the Flower plumbing
(SuperLink, SuperNode, executor, runtime, ServerApp) on their own.
``--refuse REASON`` refuses every message with that reason.
"""

from __future__ import annotations

import argparse
import sys

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.run import Run

from federation.flower.runtime import RunRefusedError, serve_task
from federation.runspec import RunSpec


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--refuse", default="")
    args = parser.parse_args()

    def factory(message: Message, context: Context, run: Run) -> ClientApp:
        RunSpec.from_run_config(context.run_config)  # the spec must arrive intact
        if args.refuse:
            raise RunRefusedError(args.refuse)
        app = ClientApp()

        @app.train()
        def train(msg: Message, ctx: Context) -> Message:
            content = RecordDict(
                {
                    "arrays": msg.content["arrays"],
                    "metrics": MetricRecord({"num-examples": 10, "loss": 0.5}),
                }
            )
            return Message(content, reply_to=msg)

        @app.evaluate()
        def evaluate(msg: Message, ctx: Context) -> Message:
            content = RecordDict({"metrics": MetricRecord({"num-examples": 10, "mae": 3.0})})
            return Message(content, reply_to=msg)

        return app

    return serve_task(args.runtime_api_address, args.token, factory)


if __name__ == "__main__":
    sys.exit(main())
