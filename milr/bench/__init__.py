"""Benchmarks: what a MILR step costs next to a plain generation (``default``) and the
performance targets' GPU figures in one budgeted run (``gpu``), on random models of real shapes
(``model_sizes``). Run as ``python -m milr.bench [--suite gpu]`` (``cli``)."""
