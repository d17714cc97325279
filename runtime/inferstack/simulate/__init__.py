"""Trace replay in virtual time: the production autoscaler, metrics window and admission against a
simulated provider and a continuous-batching replica model (`inferstack simulate`, bench/autoscaler.py)."""
