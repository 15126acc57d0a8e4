"""Development tools run from a source checkout, outside the wheel: the sample generator
(``python -m tools.synth``, ``make sample``) and the benchmarks (``python -m tools.bench``,
``make bench``)."""
