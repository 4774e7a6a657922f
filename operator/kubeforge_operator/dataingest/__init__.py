"""The DataIngest resource: its children's builders, its status decision, its reconcile, its
metrics, its schedule and the provisioning of its bucket."""
