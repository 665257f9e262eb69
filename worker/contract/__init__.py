"""The wire contract: what a job and a result are on the queue and the topic.

Owns the job and result models and their decoding with readable reasons (``jobs``), the published
JSON Schemas (``schema``) with patterns both Python's and Node's validators read (``patterns``), and
the field-level encryption of secrets inside a job (``fields``). Producers, the importer and the
worker all speak it, so it imports nothing of the worker's outside this folder.
"""
