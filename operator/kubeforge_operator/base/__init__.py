"""What the reconciles of every kubeforge resource share; it knows no resource of its own.

- `pods`: why a pod cannot start (a container's waiting reason, the scheduler's verdict).
- `jobs`: what a batch/v1 Job says of its end, and the start and completion times it gives.
- `outcome`: a reconcile's verdict (phase, reason, message), the conditions it writes and the
  Event of a transition.
- `reconcile`: the reconcile skeleton (read, decide, act, report) and its shared steps (apply the
  children that drifted, patch status only when it changed).
- `metrics`: the last status each reconcile decided, counted by phase when Prometheus scrapes.
"""
