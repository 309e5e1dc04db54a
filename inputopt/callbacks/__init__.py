"""Side effects of a run (the Lightning side), one module per concern.

- :mod:`~inputopt.callbacks.images`: images on disk and in TensorBoard (``SaveImages``, ``LogImages``);
- :mod:`~inputopt.callbacks.tables`: the per-step prediction table and the random-sphere check;
- :mod:`~inputopt.callbacks.checkpoints`: a checkpoint when a run is interrupted, the lock on a run folder;
- :mod:`~inputopt.callbacks.progress`: the summary and the progress bar of a fit;
- :mod:`~inputopt.callbacks.quality`: the quality metrics of a fit's images;
- :mod:`~inputopt.callbacks.visualization_checks`: whether each visualization can be trusted (a fit's or a sweep's);
- :mod:`~inputopt.callbacks.importance`: MACO-style importance maps;
- :mod:`~inputopt.callbacks.attack`, :mod:`~inputopt.callbacks.sweep`, :mod:`~inputopt.callbacks.examples`,
  :mod:`~inputopt.callbacks.inversion`: the results of the dataset runners.

Import a callback from its module, or from :mod:`inputopt` (``from inputopt import SaveImages``); a config names
it by its short name (``class_path: SaveImages``).
"""
