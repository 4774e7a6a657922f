"""Test helpers for kubeforge's custom resources on the cluster: create, read, wait, Events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.polling import wait_for

GROUP, VERSION = "kubeforge.dev", "v1alpha1"
EXIT_CODE = "kubeforge.dev/test-exit-code"


class CustomResources:
    """The test's view of one kind of kubeforge resource in one namespace."""

    kind: ClassVar[str]
    plural: ClassVar[str]

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.objects = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": self.kind,
            "metadata": {"name": name},
            "spec": spec,
        }
        return self.create_object(body)

    def create_object(self, body: dict[str, Any]) -> dict[str, Any]:
        """Creates a whole resource (a sample, say) in this namespace; returns it as created."""
        body = {**body, "metadata": {**body["metadata"], "namespace": self.namespace}}
        created = self.objects.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, body
        )
        return cast(dict[str, Any], created)

    def get(self, name: str) -> dict[str, Any]:
        found = self.objects.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, name
        )
        return cast(dict[str, Any], found)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.objects.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.objects.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural, name
        )

    def wait(
        self, name: str, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            found = self.get(name)
            return found if check(found.get("status") or {}) else None

        return wait_for(probe, f"{self.kind} {name}: {what}", timeout)

    def status(self, name: str) -> dict[str, Any]:
        return cast(dict[str, Any], self.get(name).get("status") or {})

    def wait_finished(self, name: str, what: str = "", timeout: float = 60) -> dict[str, Any]:
        """The status once the phase is Succeeded or Failed."""
        found = self.wait(
            name, f"finished{what}", lambda s: s.get("phase") in ("Succeeded", "Failed"), timeout
        )
        return cast(dict[str, Any], found["status"])

    def wait_phase(self, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait(name, f"phase {phase}", lambda s: s.get("phase") == phase, timeout)

    def wait_reason(
        self, name: str, reason: str, timeout: float = 60, *, of: str = "Ready"
    ) -> dict[str, Any]:
        """Waits until the condition `of` carries `reason`."""
        return self.wait(
            name,
            f"{of} with reason {reason}",
            lambda s: condition(s, of).get("reason") == reason,
            timeout,
        )

    def names(self) -> list[str]:
        listed = self.objects.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, self.plural
        )
        return [item["metadata"]["name"] for item in cast(dict[str, Any], listed)["items"]]

    def end_pod(self, pod: client.V1Pod, exit_code: int) -> None:
        """Ends a kwok pod with this exit code (hack/kwok/test-stages.yaml)."""
        self.core.patch_namespaced_pod(
            pod.metadata.name,
            self.namespace,
            {"metadata": {"annotations": {EXIT_CODE: str(exit_code)}}},
        )

    def events(self, name: str) -> list[client.CoreV1Event]:
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return list(events.items)

    def wait_event(self, name: str, reason: str, timeout: float = 30) -> client.CoreV1Event:
        """Waits for an Event with this reason about the resource (posted after its status)."""

        def probe() -> client.CoreV1Event | None:
            return next((e for e in self.events(name) if e.reason == reason), None)

        return wait_for(probe, f"an Event {reason} about {self.kind} {name}", timeout)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def read_or_none(read: Callable[[], Any]) -> Any:
    """The result of a read, or None while the object does not exist."""
    try:
        return read()
    except ApiException as error:
        if error.status == 404:
            return None
        raise
