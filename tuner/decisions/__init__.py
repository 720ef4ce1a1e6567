"""What a quant does with a finished experiment: read its results, report them (text, CSV,
HTML with figures), rebuild and export its Optuna studies, promote winners, evaluate a config."""
