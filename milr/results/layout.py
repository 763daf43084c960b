"""The run-folder layout, named once for the writer, the readers and the benchmark commands.

``RUN_DIR/config.yaml`` (the first run's; a resume with another config adds
``config.resume-<n>.yaml``), ``run.json`` (the settings' fingerprint), ``summary.json``,
``runs.jsonl`` (one line per finished run) and one folder per prompt with ``metadata.jsonl``,
``samples/{r:04d}.png`` (the selected image of repeat r), ``initial/{r:04d}.png``,
``trace/{r:04d}.jsonl`` and, written last, ``result.json``. Beside them: ``official/`` (a
benchmark command's scores), ``failed/`` (prompts whose reward failed), ``.partial/`` (prompts
being staged), ``.inflight/`` (snapshots of running prompts) and ``.lock`` (the writing run).
"""

from __future__ import annotations

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
RUNS_FILE = "runs.jsonl"  # one line per finished run: wall seconds, prompts written
LOCK_FILE = ".lock"
RESULT_FILE = "result.json"  # a prompt folder is complete when it holds this
METADATA_FILE = "metadata.jsonl"
SAMPLES_DIR = "samples"
INITIAL_DIR = "initial"
TRACE_DIR = "trace"
OFFICIAL_DIR = "official"  # official/<benchmark>.json: a benchmark command's summary of the run
FAILED_DIR = "failed"  # one record per prompt whose reward failed and that has not completed since
STAGING = ".partial"
INFLIGHT = ".inflight"
PROMPT_FILE = "prompt.json"  # in a staged folder: which prompt it holds (resume checks it)
