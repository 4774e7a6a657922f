"""The kubeforge trainer: the workload each TrainingJob pod runs under torchrun.

`python -m kubeforge_trainer --config FILE` reads a `kubeforge.plan.WorkerConfig` and trains one
of the built-in models with DDP (NCCL on GPUs, gloo on CPUs). The modules, each with one job:

- `distributed`: the process group from torchrun's environment, and the per-step agreement of
  all ranks on stopping and checkpointing.
- `order`, `loader`: the world-size-independent global data order and the prefetching loader
  that hands each rank its share of every global batch.
- `digits`, `text`: the two sample sources (bundled handwritten digits; byte-level text shards).
- `mlp`, `gpt`, `tasks`: the models and what ties a model to its data.
- `schedule`, `throughput`: the learning-rate schedule; FLOPs, MFU and rates.
- `checkpoint`, `ranged_read`, `state_file`: atomic checkpoints in object storage, resumed from
  the newest that verifies; reading a large object in concurrent ranges, hashed while it
  arrives; the state as a JSON header and tensor bytes that load as views, without unpickling.
- `artifacts`: the final weights, config and metrics.json next to the checkpoints.
- `hugging_face`: a Llama as a Hugging Face folder (the final one exported), and the folder a
  Llama starts from (`model.initFrom`).
- `reporting`, `sample_log`: progress for the operator and humans; the consumed-sample log.
- `trainer`: the loop that puts them together.
"""
