"""Forecasts turned into positions and returns: the strategy rules, the performance metrics
and the bar frequency that annualises them. Leak-free by the windows' rule (a position at bar t
uses only bars before t)."""
