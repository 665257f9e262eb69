"""``cognito-worker import FILE``: a file of users made into jobs, sent, followed and reported.

Owns the subcommand's arguments (``cli``) and the run it drives (``command``): reading the file
(``reading``), mapping a row to a job (``mapping``), its two seams to AWS (``sending``) with their
producer-library implementation (``aws``), the checkpoint a rerun resumes from (``checkpoint``),
progress on the terminal (``progress``) and the report (``report``, ``private_files``). It is a
producer like any other: it may import the contract and the producer library, never the worker's
pipeline or its Cognito side.
"""
