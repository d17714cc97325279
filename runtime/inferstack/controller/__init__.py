"""The controller: keeps every deployment's replicas where the autoscaler says, and records why.

Its parts, each owning its collaborators (built together by `assembly.build_controller`):
`loop` (tick -> observe -> decide -> apply), `replicas` (the replica lifecycle), `probes` (health and
engine gauges), `recorder` (events, status, saved state, cost) and `actions` (what the API asks for).
The flow is written up in docs/controller.md.
"""
