"""Environments with ground truth, for proving policies before real customers.

- :mod:`simulators.renewal`: subscription renewal (sure-things, lost causes, persuadables,
  do-not-disturbs; delayed outcomes, seasonality, drift) over the example campaign's offers.
- :mod:`simulators.supervised`: scikit-learn data sets as bandit streams.
- :mod:`simulators.logged`: logged data with exact propensities and true policy values.
- :mod:`simulators.runner`, :mod:`simulators.parallel`, :mod:`simulators.engine_path`: runs of
  policies in-process, on Ray, through the Engine or over gRPC; ``nbo simulate``
  (:mod:`simulators.cli`) with :mod:`simulators.plots`.
"""
