"""Command line: ``run`` (the production entry point), ``secret-hash``, ``schema``, ``demo``,
``local`` and ``import``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

from worker.secret_hash import secret_hash

EXIT_BAD_SETTING = 2


def _run(args: argparse.Namespace) -> int:
    from worker.logs import configure_logging, register_secret
    from worker.service import serve
    from worker.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        print(f"cognito-worker: bad setting {error.variable}: {error.problem}", file=sys.stderr)
        return EXIT_BAD_SETTING
    configure_logging(settings.log_level.value, settings.log_format.value)
    for client in settings.cognito_clients:
        if client.client_secret is not None:
            register_secret(client.client_secret.get_secret_value())
    return asyncio.run(serve(settings, exit_when_idle=args.exit_when_idle))


def _secret_hash(args: argparse.Namespace) -> int:
    secret = os.environ.get("COGNITO_CLIENT_SECRET", "")
    if not secret:
        print(
            "cognito-worker: bad setting COGNITO_CLIENT_SECRET: required (the secret is read from "
            "the environment, never from the command line)",
            file=sys.stderr,
        )
        return EXIT_BAD_SETTING
    print(secret_hash(args.username, args.client_id, secret))
    return 0


def _schema(args: argparse.Namespace) -> int:
    from worker.schema import job_schema, result_schema

    schema = job_schema() if args.contract == "job" else result_schema()
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    return 0


def _demo(_args: argparse.Namespace) -> int:
    try:
        from worker.demo import run_demo
    except ImportError as error:
        print(
            f"cognito-worker: the demo needs the 'local' extra ({error.name} is missing): "
            "pip install 'cognito-worker[local]', or run `make demo`",
            file=sys.stderr,
        )
        return 1
    code: int = run_demo()
    return code


def _local(args: argparse.Namespace) -> int:
    try:
        from worker.local_aws import main as local_main
    except ImportError as error:
        print(
            f"cognito-worker: `local` needs the 'local' extra ({error.name} is missing): "
            "pip install 'cognito-worker[local]'",
            file=sys.stderr,
        )
        return 1
    code: int = local_main(args.local_arguments, prog="cognito-worker local")
    return code


def _local_argv(argv: Sequence[str]) -> list[str] | None:
    """The options of ``local``, passed on whole (argparse would claim ``--help`` for itself)."""
    return list(argv[1:]) if argv[:1] == ["local"] else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cognito-worker",
        description="Create and recover Amazon Cognito users from an SQS queue.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the worker (settings from the environment)")
    run.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="stop once the queue is empty and no job is in flight (one-off imports)",
    )
    run.set_defaults(handler=_run)

    hash_command = commands.add_parser(
        "secret-hash",
        help="print the SecretHash of a username for a client (secret: $COGNITO_CLIENT_SECRET)",
    )
    hash_command.add_argument("--username", required=True)
    hash_command.add_argument("--client-id", required=True)
    hash_command.set_defaults(handler=_secret_hash)

    schema = commands.add_parser(
        "schema", help="print the JSON Schema of a job or of a result (as in schema/*.schema.json)"
    )
    schema.add_argument("contract", choices=["job", "result"])
    schema.set_defaults(handler=_schema)
    commands.add_parser(
        "demo", help="run the whole pipeline against an embedded local AWS"
    ).set_defaults(handler=_demo)
    local = commands.add_parser(
        "local",
        help="run a local AWS with a provisioned pool, queues and topic, and print the "
        "environment to export (options: `cognito-worker local --help`)",
        add_help=False,
    )
    local.set_defaults(handler=_local, local_arguments=[])

    from worker.importer.cli import add_import_parser

    add_import_parser(commands)
    return parser


_VALUE_OPTIONS = ("--username", "--client-id")


def _glue_option_values(argv: Sequence[str]) -> list[str]:
    """Turn ``--username -alice`` into ``--username=-alice``.

    argparse takes a value that starts with ``-`` for an option; usernames may start with one.
    """
    glued: list[str] = []
    index = 0
    while index < len(argv):
        argument = argv[index]
        if argument in _VALUE_OPTIONS and index + 1 < len(argv):
            glued.append(f"{argument}={argv[index + 1]}")
            index += 2
            continue
        glued.append(argument)
        index += 1
    return glued


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m worker`` and the ``cognito-worker`` script."""
    argv = sys.argv[1:] if argv is None else argv
    local_arguments = _local_argv(argv)
    if local_arguments is not None:
        return _local(argparse.Namespace(local_arguments=local_arguments))
    args = _parser().parse_args(_glue_option_values(argv))
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
