"""Synthetic SMGW fleet and test SM-PKI (``minimeter synth``)."""
