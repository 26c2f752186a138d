"""Conformance of written outputs, checked by Great Expectations suites generated from policies.

``suites``: the expectations a recipient's output must meet, and what each means to an auditor;
``derived``: the rows checked, with the columns the expectations test; ``run``: suites run batch
by batch and merged, over one run's trees; ``worker``: the process that imports Great
Expectations while the Beam job runs; ``quarantine``: moving a failing tree out of reach.
"""
