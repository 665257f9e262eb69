"""Command line: ``run`` (production), ``check``, ``import``, ``dlq``, ``job``, ``send``,
``results``, ``local``, ``secret-hash``, ``schema`` and ``demo``.

Only the standard library is imported here: ``--help``, ``--version`` and a stop signal during
start-up do not wait for the SDK to load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.settings import Settings, SettingsError

EXIT_BAD_SETTING = 2


def _report(error: SettingsError) -> int:
    """Every bad setting on its own line, naming the variable, never the value."""
    for variable, problem in error.problems:
        print(f"cognito-worker: bad setting {variable}: {problem}", file=sys.stderr)
    return EXIT_BAD_SETTING


def _load_settings() -> Settings | SettingsError:
    from worker.settings import Settings, SettingsError
    from worker.telemetry.logs import register_secret

    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        return error
    for client in settings.cognito_clients:
        if client.client_secret is not None:
            register_secret(client.client_secret.get_secret_value())
    return settings


def _run(args: argparse.Namespace) -> int:
    from worker.service import serve
    from worker.settings import SettingsError
    from worker.telemetry.logs import configure_logging, get_logger

    settings = _load_settings()
    if isinstance(settings, SettingsError):
        return _report(settings)
    configure_logging(settings.log_level.value, settings.log_format.value)
    get_logger("service").info("starting", version=_version())
    try:
        return asyncio.run(
            serve(settings, exit_when_idle=args.exit_when_idle, signals=args.signals)
        )
    except SettingsError as error:  # found at start: the health port is taken, for one
        return _report(error)
    finally:
        # The exit code is decided: a stop signal in the last moments of the exit (a burst run
        # that ends as its caller stops it) must not turn it into a kill by signal.
        if args.signals is not None:
            args.signals.hold_from_now_on()


def _check(_args: argparse.Namespace) -> int:
    from worker.operations.check import run_checks
    from worker.settings import SettingsError

    settings = _load_settings()
    if isinstance(settings, SettingsError):
        return _report(settings)
    return asyncio.run(run_checks(settings))


def _secret_hash(args: argparse.Namespace) -> int:
    from worker.cognito.secret_hash import secret_hash

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
    from worker.contract.schema import job_schema, result_schema

    schema = job_schema() if args.contract == "job" else result_schema()
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    return 0


def _demo(_args: argparse.Namespace) -> int:
    try:
        from worker.local.demo import run_demo
    except ImportError as error:
        print(
            f"cognito-worker: the demo needs the 'local' extra ({error.name} is missing): "
            "from a clone, pip install './cognito-worker[local]' (docs/producers.md), or run "
            "`make demo`",
            file=sys.stderr,
        )
        return 1
    code: int = run_demo()
    return code


def _local(args: argparse.Namespace) -> int:
    try:
        from worker.local.aws import main as local_main
    except ImportError as error:
        print(
            f"cognito-worker: `local` needs the 'local' extra ({error.name} is missing): "
            "from a clone, pip install './cognito-worker[local]' (docs/producers.md)",
            file=sys.stderr,
        )
        return 1
    code: int = local_main(args.local_arguments, prog="cognito-worker local")
    return code


def _local_argv(argv: Sequence[str]) -> list[str] | None:
    """The options of ``local``, passed on whole (argparse would claim ``--help`` for itself)."""
    return list(argv[1:]) if argv[:1] == ["local"] else None


def _parser() -> argparse.ArgumentParser:
    from worker.operations.settings_doc import help_text

    parser = argparse.ArgumentParser(
        prog="cognito-worker",
        description="Create and recover Amazon Cognito users from an SQS queue.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="run the worker (settings from the environment)",
        description="Run the worker until SIGTERM or SIGINT. Every setting is read from the "
        "environment; credentials and endpoints come from the AWS SDK's usual chain.",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="burst mode: stop once the queue holds nothing (visible, in flight or delayed) "
        "and no job is running, with a summary line (one-off imports)",
    )
    run.set_defaults(handler=_run)

    check = commands.add_parser(
        "check",
        help="check the configuration and every AWS resource it names, changing nothing",
        description="Check the credentials, the queue and its dead-letter queue, the topic, the "
        "idempotency table, each app client (its secret, without creating anything) and the "
        "rate settings against Cognito's default quotas. One line per check; exit 1 if any "
        "fails, 2 for a bad setting. Reads the same environment as `run`.",
    )
    check.set_defaults(handler=_check)

    hash_command = commands.add_parser(
        "secret-hash",
        help="print the SecretHash of a username for a client (secret: $COGNITO_CLIENT_SECRET)",
        description="Print the SecretHash Cognito expects for USERNAME and CLIENT_ID. The client "
        "secret is read from the COGNITO_CLIENT_SECRET environment variable, never from the "
        "command line (where it would land in the shell history and the process list).",
    )
    hash_command.add_argument("--username", required=True, help="exactly as sent to Cognito")
    hash_command.add_argument("--client-id", required=True, help="the app client's id")
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
    from worker.operations.dlq_cli import add_dlq_parser
    from worker.operations.job_lookup_cli import add_job_parser
    from worker.operations.send_cli import add_send_parsers

    add_import_parser(commands)
    add_dlq_parser(commands)
    add_job_parser(commands)
    add_send_parsers(commands)
    return parser


_VALUE_OPTIONS = ("--username", "--client-id", "--job-id")


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


def _version() -> str:
    try:
        return metadata.version("cognito-worker")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m worker`` and the ``cognito-worker`` script."""
    argv = sys.argv[1:] if argv is None else argv
    local_arguments = _local_argv(argv)
    if local_arguments is not None:
        return _local(argparse.Namespace(local_arguments=local_arguments))
    arguments = _glue_option_values(argv)
    signals = None
    if arguments[:1] == ["run"]:
        from worker.operations.signals import StopSignals

        # First of all: a stop during start-up (loading the SDK takes a while) is heard.
        signals = StopSignals()
        signals.install_early()
    args = _parser().parse_args(arguments)
    args.signals = signals
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
