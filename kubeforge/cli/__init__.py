"""The `kubeforge` command: validate resources offline, run them on this machine, watch them on a
cluster, and the demo.

`main` parses the command line; `resources` reads and checks YAML with the API models;
`local_state`, `processes`, `local_ingest`, `local_training` and `runner` run DataIngests and
TrainingJobs as local processes from the same plans the operator materialises as pods; `view`
shows their progress; `report` writes what they produced; `cluster` reads them from a cluster;
`localweb` and `demo` are the demo's web of real text and its script. The core never imports a
component: crawler and trainer run as programs.
"""
