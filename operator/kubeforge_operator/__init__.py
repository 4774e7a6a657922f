"""The kubeforge operator: kopf handlers that reconcile DataIngest and TrainingJob resources."""
