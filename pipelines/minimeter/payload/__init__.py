"""Gateway payloads: DKE K461 ``profile_generic`` XML (encode for synth, decode for the pipeline)."""
