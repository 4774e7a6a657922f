"""The TrainingJob resource: its children's builders, its status decision, its reconcile and its
metrics."""
