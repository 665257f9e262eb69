"""The local stack: the embedded local AWS (``cognito-worker local``) and ``make demo``.

Owns moto server with its Cognito front that checks the SecretHash (``aws``), and the demo
(``demo``, with its import part in ``import_demo``), which run the worker and the importer as
child processes. Needs the ``local`` extra; it imports nothing of the worker's outside this folder,
and only the CLI imports it.
"""
