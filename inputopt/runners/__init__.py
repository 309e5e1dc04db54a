"""The dataset runners (the Lightning side): one input optimization, or one forward, per batch of a data set.

- :mod:`~inputopt.runners.base`: :class:`~inputopt.runners.base.DatasetRunner`, the base of every runner;
- :mod:`~inputopt.runners.attack`: :class:`~inputopt.runners.attack.AttackEvaluation`, an attack over a data set;
- :mod:`~inputopt.runners.sweep`: :class:`~inputopt.runners.sweep.FeatureSweep`, many units, the units as the data;
- :mod:`~inputopt.runners.examples`: :class:`~inputopt.runners.examples.DatasetExamples`, the top-k images of units.

Each module imports only what it runs: a sweep does not import the attacks.
"""
