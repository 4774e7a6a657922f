"""The kubeforge crawler: the workload each DataIngest pod runs to fetch, clean and dedup data."""
