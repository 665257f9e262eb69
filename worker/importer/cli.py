"""The ``import`` subcommand's arguments, and the one place that turns them into an import run."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

# Standard library only at module level: the CLI builds this parser for every command, and
# `--help` or `--version` should not wait for pydantic and the SDK to load.
from worker.importer.job_types import IMPORTABLE_TYPES
from worker.importer.reading import FileFormat, UnreadableFile, detect_format

EXIT_USAGE = 2

_EPILOG = """\
columns: username, password, validation_data.NAME, client_metadata.NAME; every other column is
a user attribute (email, given_name, custom:NAME ...). With --type import_user the data
chooses the path: a row with a password goes through the worker, a row without one through
Cognito's user import job (--path to choose yourself). The plan is printed before anything is
sent. Settings from the environment: BULK_JOBS_QUEUE_URL (the bulk lane, the default when
set) or JOBS_QUEUE_URL, RESULTS_TOPIC_ARN (for --wait),
FIELD_ENCRYPTION_KEY_ARN (as --kms-key-arn), COGNITO_USER_POOL_ID and IMPORT_LOGS_ROLE_ARN (for
import jobs), AWS_REGION and the usual AWS credentials. See docs/imports.md and docs/secrets.md.
"""


def add_import_parser(commands: Any) -> None:
    """Add ``import`` to the CLI's subcommands."""
    parser = commands.add_parser(
        "import",
        help="send a CSV or JSON Lines file of users as jobs, with progress, resume and a report",
        description="Validate every row of FILE, send the rows as jobs of one type, and report.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, metavar="FILE")
    parser.add_argument(
        "--type",
        dest="job_type",
        required=True,
        choices=IMPORTABLE_TYPES,
        help="the job every row becomes: import_user (a migration: users ready to sign in, no "
        "message sent), invite_user (Cognito invites each user with a temporary password), "
        "sign_up (each user gets a confirmation message), forgot_password, "
        "resend_confirmation_code",
    )
    parser.add_argument(
        "--path",
        choices=("auto", "worker", "import-job"),
        default="auto",
        help="import_user only: auto (default: a row with a password through the worker, one "
        "without through Cognito's user import job), worker, or import-job (every row; users "
        "end RESET_REQUIRED, passwords are not imported)",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="confirm the plan without a prompt (needed to start an import job when stdin is "
        "not a terminal)",
    )
    parser.add_argument(
        "--job-rows",
        type=int,
        default=500_000,
        help="at most this many rows per import job (default and maximum 500000, Cognito's "
        "limit; files are split at 100 MB too)",
    )
    parser.add_argument(
        "--user-pool-id",
        default=os.environ.get("COGNITO_USER_POOL_ID") or None,
        help="the pool import jobs import into (default: $COGNITO_USER_POOL_ID)",
    )
    parser.add_argument(
        "--logs-role-arn",
        default=os.environ.get("IMPORT_LOGS_ROLE_ARN") or None,
        help="the role Cognito assumes to write an import job's log (default: "
        "$IMPORT_LOGS_ROLE_ARN)",
    )
    parser.add_argument(
        "--format", choices=[f.value for f in FileFormat], help="default: by extension"
    )
    parser.add_argument(
        "--import-id",
        help="names this import (job ids are IMPORT_ID:TYPE:LINE); default: the file's name and "
        "the first 12 hex digits of its SHA-256",
    )
    parser.add_argument(
        "--client-id", help="the app client of every job (default: the worker's first)"
    )
    parser.add_argument(
        "--skip-invalid", action="store_true", help="send the valid rows even if some are invalid"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip the rows the checkpoint says were sent, and look up in the worker's "
        "idempotency table (IDEMPOTENCY_STORE=dynamodb, IDEMPOTENCY_TABLE) what became of them",
    )
    parser.add_argument(
        "--case-sensitive-usernames",
        action="store_true",
        help="compare usernames exactly when looking for repeated users (default: without "
        "case, as a pool whose usernames are case-insensitive does)",
    )
    parser.add_argument(
        "--validate-only",
        action="store_true",
        help="check every row, send nothing; the report is IMPORT_ID.TYPE.validation.csv",
    )
    parser.add_argument(
        "--wait", action="store_true", help="follow the results of this import until all arrive"
    )
    parser.add_argument(
        "--wait-timeout-s",
        type=float,
        default=300.0,
        help="with --wait, give up when no result has arrived for this long (default 300)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="the report CSV (default IMPORT_ID.TYPE.report.csv; with --validate-only "
        "IMPORT_ID.TYPE.validation.csv)",
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="the checkpoint (default IMPORT_ID.TYPE.checkpoint.json)"
    )
    parser.add_argument(
        "--kms-key-arn",
        default=os.environ.get("FIELD_ENCRYPTION_KEY_ARN") or None,
        help="encrypt each password under this KMS key before sending (default: "
        "$FIELD_ENCRYPTION_KEY_ARN; none: passwords are sent as they are)",
    )
    parser.add_argument(
        "--lane",
        choices=("bulk", "interactive"),
        help="the worker's lane to send to (default: bulk when BULK_JOBS_QUEUE_URL is set, "
        "so live jobs keep going first; else the jobs queue)",
    )
    parser.add_argument(
        "--progress-interval-s",
        type=float,
        default=5.0,
        help="when stdout is not a terminal (or one 0 columns wide), one progress line per this "
        "many seconds (default 5)",
    )
    parser.set_defaults(handler=run_import_command)


def _usage_error(message: str) -> int:
    print(f"cognito-worker import: {message}", file=sys.stderr)
    return EXIT_USAGE


def _prompt() -> bool:
    answer = input("Send as planned? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _user_import_factory(args: argparse.Namespace) -> Any:
    """Builds the import-job client when a row first needs it (None without a pool)."""
    if not args.user_pool_id:
        return None

    def build() -> Any:
        from worker.importer.aws_user_import import CognitoUserImportJobs

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        return CognitoUserImportJobs(args.user_pool_id, args.logs_role_arn, region)

    return build


def run_import_command(args: argparse.Namespace) -> int:
    """Run ``import`` with the parsed arguments; return the exit code."""
    from botocore.exceptions import BotoCoreError, ClientError

    from worker.importer.checkpoint import CheckpointMismatch
    from worker.importer.command import (
        EXIT_INTERRUPTED,
        EXIT_ROWS_NOT_DONE,
        ImportOptions,
        ImportRun,
        SendingUnavailable,
    )
    from worker.importer.job_csv import MAX_ROWS_PER_JOB, PoolHeaderError
    from worker.importer.mapping import IMPORT_ID_PATTERN, MappingError
    from worker.importer.progress import progress_factory
    from worker.importer.routes import SendPath

    if args.import_id is not None and not IMPORT_ID_PATTERN.match(args.import_id):
        return _usage_error("--import-id: 1-64 letters, digits, '_', '.' or '-'")
    if args.path != "auto" and args.job_type != "import_user":
        return _usage_error(f"--path: {args.job_type} jobs go through the worker only")
    if not 1 <= args.job_rows <= MAX_ROWS_PER_JOB:
        return _usage_error(f"--job-rows: 1 to {MAX_ROWS_PER_JOB}")
    if not args.file.is_file():
        return _usage_error(f"{args.file}: no such file")
    try:
        file_format = detect_format(args.file, FileFormat(args.format) if args.format else None)
    except UnreadableFile as error:
        return _usage_error(str(error))
    options = ImportOptions(
        file=args.file,
        job_type=args.job_type,
        file_format=file_format,
        import_id=args.import_id,
        client_id=args.client_id,
        skip_invalid=args.skip_invalid,
        resume=args.resume,
        validate_only=args.validate_only,
        wait=args.wait,
        wait_timeout_s=args.wait_timeout_s,
        report=args.report,
        checkpoint=args.checkpoint,
        path=SendPath(args.path),
        yes=args.yes,
        job_rows=args.job_rows,
        case_sensitive_usernames=args.case_sensitive_usernames,
    )
    sender = follower = None
    lane_line = ""
    # Rows that all go through import jobs need no queue: without JOBS_QUEUE_URL, the run says
    # so only if a row needs the worker.
    jobs_only_possible = options.job_type == "import_user" and options.path is not SendPath.WORKER
    queue_set = os.environ.get("JOBS_QUEUE_URL") or os.environ.get("BULK_JOBS_QUEUE_URL")
    if not options.validate_only and (queue_set or not jobs_only_possible):
        from worker.importer.aws import AwsSettingsError, aws_endpoints_from_env

        try:
            sender, follower, lane_line = aws_endpoints_from_env(
                os.environ, wait=options.wait, kms_key_arn=args.kms_key_arn, lane=args.lane
            )
        except AwsSettingsError as error:
            return _usage_error(str(error))
    lookup, lookup_unavailable = None, ""
    if options.resume and not options.validate_only:
        from worker.importer.aws import lookup_from_env

        lookup, lookup_unavailable = lookup_from_env(os.environ, options.client_id)
    run = ImportRun(
        options,
        sender=sender,
        follower=follower,
        progress=progress_factory(sys.stdout, args.progress_interval_s),
        output=sys.stdout,
        user_import=_user_import_factory(args),
        confirm=_prompt if sys.stdin.isatty() and sys.stdout.isatty() else None,
        lookup=lookup,
        lookup_unavailable=lookup_unavailable,
        lane_line=lane_line,
    )
    try:
        return run.execute()
    except (UnreadableFile, MappingError, CheckpointMismatch, PoolHeaderError) as error:
        return _usage_error(str(error))
    except SendingUnavailable as error:
        return _usage_error(str(error))
    except (ClientError, BotoCoreError) as error:
        print(f"cognito-worker import: AWS refused a call: {error}", file=sys.stderr)
        return EXIT_ROWS_NOT_DONE
    except KeyboardInterrupt:
        print("\ncognito-worker import: stopped at once (second Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
