"""The kubeforge trainer: the workload each TrainingJob pod runs under torchrun."""
