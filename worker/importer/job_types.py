"""The job types an import can send: the ones that need nothing but what a file of users holds.

Confirmations need each user's code, which no file of users has. Standard library only: the CLI
offers these as ``--type`` choices without loading the contract (see ``cli``), and the mapping
checks each against the contract's models (``mapping.importable_types``).
"""

IMPORTABLE_TYPES = (
    "sign_up",
    "import_user",
    "invite_user",
    "forgot_password",
    "resend_confirmation_code",
)
