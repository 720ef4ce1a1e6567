"""The Ray engine: the driver that tunes an experiment's studies on model actors (Tune runs of
packed trials, the Optuna searcher, the journal, the lock, the live view) and collates winners."""
