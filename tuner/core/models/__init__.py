"""Our own inference-only implementations of Toto and Kronos, loading the official checkpoints.

Torch is imported by these modules only; the rest of the package imports them lazily.
"""
