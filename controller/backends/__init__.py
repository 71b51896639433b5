"""Backends run TaskSpecs and report what they see as Observations: `local`, `kubernetes`."""
