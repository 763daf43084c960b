"""Experiment harnesses: one command per experiment runs the runner on every method, scores the
run folders with the benchmark's own command and writes the report. Unlike the rest of ``milr``,
a harness wires a concrete reward in (as the runner does); nothing in ``milr`` imports it."""
