"""Pulumi components of the inferstack platform: one component per module, typed Args, children parented."""
