"""Deployments declared as code: a stack file's content (`stackfile`), what it takes to make a control
plane match it (`plan`, pure) and carrying that out over the REST client (`apply`)."""
