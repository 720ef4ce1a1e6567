"""forecast-tuner: tune Toto and Kronos inference hyperparameters per symbol.

Four layers, each importing only those below it (checked by import-linter, see pyproject.toml):
``tuner.cli`` → ``tuner.decisions`` (reports, export, promotion) → ``tuner.engine`` (the Ray
driver, searcher, actors, journal) → ``tuner.core`` (data → windows → families → metrics →
trial, significance; runs without Ray).
"""

__version__ = "0.1.0"
