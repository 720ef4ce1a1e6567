"""Tests and decisions over per-window errors, pure numpy/scipy/arch: a winner's significance
(Diebold–Mariano, SPA, PBO, MCS), panel tests across symbols, the universe-level decision, and
the trading statistics (Deflated Sharpe, Sharpe differences, the sequential forward test).
A new test statistic goes here."""
