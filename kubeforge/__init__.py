"""kubeforge's shared core: the API models, object storage, dataset format and workload plan.

Every component (operator, trainer, crawler) imports from here; this package imports none of them.
"""
