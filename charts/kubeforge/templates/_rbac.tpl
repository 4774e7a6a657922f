{{/*
The operator's permissions wherever it watches (a ClusterRole when it watches every namespace, a
Role in each watched namespace otherwise), each rule with the code that needs it. Nothing here
lets the operator read what it does not use: no list of Secrets, no Pod creation (the Job
controller creates the pods), no exec.
*/}}
{{- define "kubeforge.operatorRules" -}}
# kopf: list and watch TrainingJobs and DataIngests (handlers.py indexes and event handlers).
# kubeforge: delete a finished TrainingJob after ttlSecondsAfterFinished (k8s.delete_training_job).
- apiGroups: ["kubeforge.dev"]
  resources: ["trainingjobs"]
  verbs: ["list", "watch", "delete"]
# kopf: list and watch. kubeforge: add and remove the DataIngest's `kubeforge.dev/delete-data`
# finalizer (deletionPolicy: Delete; k8s.set_finalizers).
- apiGroups: ["kubeforge.dev"]
  resources: ["dataingests"]
  verbs: ["list", "watch", "patch"]
# kubeforge: write status through the status subresource, never spec (k8s.patch_status).
- apiGroups: ["kubeforge.dev"]
  resources: ["trainingjobs/status", "dataingests/status"]
  verbs: ["patch"]
# kubeforge: children carry blockOwnerDeletion owner references, which clusters running the
# OwnerReferencesPermissionEnforcement admission plugin allow only to who may update finalizers.
- apiGroups: ["kubeforge.dev"]
  resources: ["trainingjobs/finalizers", "dataingests/finalizers"]
  verbs: ["update"]
# kopf: watch the worker, crawl and publish Jobs. kubeforge: server-side apply them (create and
# patch), suspend a worker Job, and delete one to restart the group or replace an immutable
# template, or before deleting a DataIngest's data.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# kopf: watch the worker pods (phase, exit codes, node loss). kubeforge: mark a counted failure
# with an annotation so it is charged once (k8s.annotate_pod); force-delete a worker stuck
# terminating on a node that no longer answers, as the pod garbage collector would: mark it
# Failed, then delete it, so that the Job controller can replace it (k8s.force_delete_pod).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "patch", "delete"]
# kubeforge: mark such a stuck pod Failed before deleting it (k8s.force_delete_pod).
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["patch"]
# kopf: watch the config and progress ConfigMaps. kubeforge: server-side apply them. `get` is
# never called: it is held so that the operator may grant it to a job's progress-writer Role
# (RBAC lets nobody grant what they do not hold; builders.build_progress_role).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
# kopf: watch. kubeforge: server-side apply the workers' headless Service, the rendezvous
# store's Service and the workers' ServiceAccount.
- apiGroups: [""]
  resources: ["services", "serviceaccounts"]
  verbs: ["list", "watch", "create", "patch"]
# kopf: watch. kubeforge: server-side apply each job's rendezvous store, a one-pod Deployment
# apart from the workers (builders.build_rendezvous_deployment).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch"]
# kopf: watch. kubeforge: server-side apply each job's progress-writer Role and RoleBinding
# (get and patch of one ConfigMap, by name), with no escalate or bind: the rules above hold it.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["list", "watch", "create", "patch"]
# kopf: watch. kubeforge: server-side apply gang-scheduling PodGroups (scheduling.gang).
# Harmless where Volcano or scheduler-plugins is not installed.
- apiGroups: ["scheduling.volcano.sh", "scheduling.x-k8s.io"]
  resources: ["podgroups"]
  verbs: ["list", "watch", "create", "patch"]
# kubeforge: read the S3 credentials Secret a DataIngest names (storage.credentialsSecretRef),
# by name, just before each use. No list or watch: Secrets cannot be enumerated.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# kopf and kubeforge: post Events about TrainingJobs and DataIngests (k8s.post_event).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
