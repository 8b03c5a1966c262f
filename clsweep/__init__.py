"""The ``clsweep`` command: one entry point for a run, a sweep and a report.

``clsweep run ...`` is ``python -m cl_core ...``, ``clsweep sweep ...`` is ``python -m sweep ...``
and ``clsweep report ...`` is ``python -m analysis report ...``; each subcommand imports only its
own package, so ``clsweep report`` works where only the analysis is installed.
"""
