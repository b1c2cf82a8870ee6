"""Server-side printers of the built-in kinds: Table columns as data, one cell function per kind.

Mirrors ``pkg/printers/internalversion/printers.go`` of Kubernetes 1.33 (and kube-aggregator's
APIService convertor). The apiserver always generates the *wide* form (``GenerateOptions{Wide:
true}``): every column, ``priority`` 1 included, one cell per column. ``PRINTERS`` is keyed by
``(group, kind)``, so a kind gets its printer as soon as its definition exists; adding one is a
``Printer(columns, cells)`` entry. Kinds printed by the apiserver's *default convertor* (no printer in
printers.go: Role, ClusterRole, LimitRange, CRDs) have ``DEFAULT_CONVERTOR``. A kind with neither
gets the custom-resource default (Name + Age), which the gateway builds.

Column descriptions are what printers.go takes from ``SwaggerDoc()``; here they name the schema
field (``Doc``) and are read from the bundled OpenAPI definitions (GA types stand in for the
extensions/v1beta1 & co. types printers.go quotes; the texts match apart from later edits upstream).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from . import _cells as core
from . import _cells_apis as apis

__all__ = ["CREATED_DESCRIPTION", "DEFAULT_CONVERTOR", "NAME_DESCRIPTION", "PRINTERS", "Column", "Doc", "Printer",
           "printer_for"]


class Doc(NamedTuple):
    """A column description taken from a schema field's description (``SwaggerDoc()[field]``)."""

    definition: str
    field: str


class Column(NamedTuple):
    name: str
    type: str = "string"
    description: str | Doc = ""
    priority: int = 0
    format: str = ""


Cells = Callable[[Mapping[str, Any], datetime], list[Any]]


class Printer(NamedTuple):
    columns: tuple[Column, ...]
    cells: Cells

    def column_definitions(self) -> list[dict[str, Any]]:
        """``TableColumnDefinition`` dicts (fresh copies)."""
        return [dict(c) for c in _definitions(self.columns)]


@functools.cache
def _definitions(columns: tuple[Column, ...]) -> tuple[dict[str, Any], ...]:
    return tuple({"name": c.name, "type": c.type, "format": c.format, "description": _describe(c.description),
                  "priority": c.priority} for c in columns)


def _describe(d: str | Doc) -> str:
    if isinstance(d, str):
        return d
    from ._schemas import definitions  # the schemas are loaded at start; this only reads them

    prop = definitions().get(d.definition, {}).get("properties", {}).get(d.field, {})
    return str(prop.get("description", ""))


# --- descriptions --------------------------------------------------------------------------------

NAME_DESCRIPTION = ("Name must be unique within a namespace. Is required when creating resources, although some "
           "resources may allow a client to request the generation of an appropriate name automatically. "
           "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
           "updated. More info: "
           "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
CREATED_DESCRIPTION = ("CreationTimestamp is a timestamp representing the server time when this object was created. "
              "It is not guaranteed to be set in happens-before order across separate operations. Clients "
              "may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the "
              "system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/"
              "sig-architecture/api-conventions.md#metadata")
_D_CONTAINERS = "Names of each container in the template."
_D_IMAGES = "Images referenced by each container in the template."

NAME = Column("Name", "string", NAME_DESCRIPTION, 0, "name")
AGE = Column("Age", "string", CREATED_DESCRIPTION)
CREATED_AT = Column("Created At", "date", CREATED_DESCRIPTION)
CONTAINERS = Column("Containers", "string", _D_CONTAINERS, 1)
IMAGES = Column("Images", "string", _D_IMAGES, 1)

_CORE = "io.k8s.api.core.v1."
_APPS = "io.k8s.api.apps.v1."


def _selector(description: str | Doc) -> Column:
    return Column("Selector", "string", description, 1)


DEFAULT_CONVERTOR = Printer((NAME, CREATED_AT), apis.default_convertor)
"""The apiserver's default Table convertor (``pkg/registry/rest/table.go``): Name + Created At."""

_RBAC = "rbac.authorization.k8s.io"
_FS_SPEC = "io.k8s.api.flowcontrol.v1.FlowSchemaSpec"
_PL_SPEC = "io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationSpec"
_PL_LIMITED = "io.k8s.api.flowcontrol.v1.LimitedPriorityLevelConfiguration"
_PL_QUEUING = "io.k8s.api.flowcontrol.v1.QueuingConfiguration"
_RB_ROLE = ("RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. "
            "If the RoleRef cannot be resolved, the Authorizer must return an error.")
_CRB_ROLE = ("RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be "
             "resolved, the Authorizer must return an error.")


def _bindings(role: str, what: str) -> tuple[Column, ...]:
    return (NAME, Column("Role", "string", role), AGE, Column("Users", "string", f"Users in the {what}", 1),
            Column("Groups", "string", f"Groups in the {what}", 1),
            Column("ServiceAccounts", "string", f"ServiceAccounts in the {what}", 1))


_EVENT_COLUMNS = (
    Column("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
    Column("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
    Column("Reason", "string", "This should be a short, machine understandable string that gives the reason for "
                               "the transition into the object's current status."),
    Column("Object", "string", "The object that this event is about."),
    Column("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string "
                                  "should contain a valid JSON/Go field access statement, such as "
                                  "desiredState.manifest.containers[2].", 1),
    Column("Source", "string", "The component reporting this event. Should be a short machine understandable "
                               "string.", 1),
    Column("Message", "string", "A human-readable description of the status of this operation."),
    Column("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in "
                                   "TypeMeta.)", 1),
    Column("Count", "string", "The number of times this event has occurred.", 1),
    Column("Name", "string", NAME_DESCRIPTION, 1, "name"),
)

_DEPLOY_STATUS = Doc(_APPS + "DeploymentStatus", "updatedReplicas")

# (group, kind) -> its printer, as printers.go registers them (wide: priority-1 columns included).
PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "ConfigMap"): Printer((NAME, Column("Data", "string", Doc(_CORE + "ConfigMap", "data")), AGE), core.config_map),
    ("", "Secret"): Printer((NAME, Column("Type", "string", Doc(_CORE + "Secret", "type")),
                             Column("Data", "string", Doc(_CORE + "Secret", "data")), AGE), core.secret),
    ("", "Namespace"): Printer((NAME, Column("Status", "string", "The status of the namespace"), AGE), core.namespace),
    ("", "ServiceAccount"): Printer((NAME, Column("Secrets", "string", Doc(_CORE + "ServiceAccount", "secrets")),
                                     AGE), core.service_account),
    ("", "Event"): Printer(_EVENT_COLUMNS, core.event),
    ("events.k8s.io", "Event"): Printer(_EVENT_COLUMNS, core.events_v1),
    ("", "Pod"): Printer((
        NAME,
        Column("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        Column("Status", "string", "The aggregate status of the containers in this pod."),
        Column("Restarts", "string", "The number of times the containers in this pod have been restarted and when "
                                     "the last container in this pod has restarted."),
        AGE,
        Column("IP", "string", Doc(_CORE + "PodStatus", "podIP"), 1),
        Column("Node", "string", Doc(_CORE + "PodSpec", "nodeName"), 1),
        Column("Nominated Node", "string", Doc(_CORE + "PodStatus", "nominatedNodeName"), 1),
        Column("Readiness Gates", "string", Doc(_CORE + "PodSpec", "readinessGates"), 1),
    ), core.pod),
    ("", "PodTemplate"): Printer((NAME, Column("Containers", "string", _D_CONTAINERS),
                                  Column("Images", "string", _D_IMAGES),
                                  Column("Pod Labels", "string", "The labels for the pod template.")), core.pod_template),
    ("", "ReplicationController"): Printer((
        NAME, Column("Desired", "integer", Doc(_CORE + "ReplicationControllerSpec", "replicas")),
        Column("Current", "integer", Doc(_CORE + "ReplicationControllerStatus", "replicas")),
        Column("Ready", "integer", Doc(_CORE + "ReplicationControllerStatus", "readyReplicas")), AGE,
        CONTAINERS, IMAGES, _selector(Doc(_CORE + "ReplicationControllerSpec", "selector")),
    ), core.replication_controller),
    ("", "Service"): Printer((
        NAME, Column("Type", "string", Doc(_CORE + "ServiceSpec", "type")),
        Column("Cluster-IP", "string", Doc(_CORE + "ServiceSpec", "clusterIP")),
        Column("External-IP", "string", Doc(_CORE + "ServiceSpec", "externalIPs")),
        Column("Port(s)", "string", Doc(_CORE + "ServiceSpec", "ports")), AGE,
        _selector(Doc(_CORE + "ServiceSpec", "selector")),
    ), core.service),
    ("", "Endpoints"): Printer((NAME, Column("Endpoints", "string", Doc(_CORE + "Endpoints", "subsets")), AGE),
                               core.endpoints),
    ("", "Node"): Printer((
        NAME, Column("Status", "string", "The status of the node"), Column("Roles", "string", "The roles of the node"),
        AGE, Column("Version", "string", Doc(_CORE + "NodeSystemInfo", "kubeletVersion")),
        Column("Internal-IP", "string", Doc(_CORE + "NodeStatus", "addresses"), 1),
        Column("External-IP", "string", Doc(_CORE + "NodeStatus", "addresses"), 1),
        Column("OS-Image", "string", Doc(_CORE + "NodeSystemInfo", "osImage"), 1),
        Column("Kernel-Version", "string", Doc(_CORE + "NodeSystemInfo", "kernelVersion"), 1),
        Column("Container-Runtime", "string", Doc(_CORE + "NodeSystemInfo", "containerRuntimeVersion"), 1),
    ), core.node),
    ("", "PersistentVolume"): Printer((
        NAME, Column("Capacity", "string", Doc(_CORE + "PersistentVolumeSpec", "capacity")),
        Column("Access Modes", "string", Doc(_CORE + "PersistentVolumeSpec", "accessModes")),
        Column("Reclaim Policy", "string", Doc(_CORE + "PersistentVolumeSpec", "persistentVolumeReclaimPolicy")),
        Column("Status", "string", Doc(_CORE + "PersistentVolumeStatus", "phase")),
        Column("Claim", "string", Doc(_CORE + "PersistentVolumeSpec", "claimRef")),
        Column("StorageClass", "string", "StorageClass of the pv"),
        Column("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
        Column("Reason", "string", Doc(_CORE + "PersistentVolumeStatus", "reason")), AGE,
        Column("VolumeMode", "string", Doc(_CORE + "PersistentVolumeSpec", "volumeMode"), 1),
    ), core.persistent_volume),
    ("", "PersistentVolumeClaim"): Printer((
        NAME, Column("Status", "string", Doc(_CORE + "PersistentVolumeClaimStatus", "phase")),
        Column("Volume", "string", Doc(_CORE + "PersistentVolumeClaimSpec", "volumeName")),
        Column("Capacity", "string", Doc(_CORE + "PersistentVolumeClaimStatus", "capacity")),
        Column("Access Modes", "string", Doc(_CORE + "PersistentVolumeClaimStatus", "accessModes")),
        Column("StorageClass", "string", "StorageClass of the pvc"),
        Column("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"), AGE,
        Column("VolumeMode", "string", Doc(_CORE + "PersistentVolumeClaimSpec", "volumeMode"), 1),
    ), core.persistent_volume_claim),
    ("", "ResourceQuota"): Printer((
        NAME, Column("Request", "string", "Request represents a minimum amount of cpu/memory that a container may "
                                          "consume."),
        Column("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use "
                                  "independent of contention on the node."), AGE,
    ), core.resource_quota),
    ("", "LimitRange"): DEFAULT_CONVERTOR,
    ("apps", "Deployment"): Printer((
        NAME, Column("Ready", "string", "Number of the pod with ready state"),
        Column("Up-to-date", "string", _DEPLOY_STATUS),
        Column("Available", "string", Doc(_APPS + "DeploymentStatus", "availableReplicas")), AGE,
        CONTAINERS, IMAGES, _selector(Doc(_APPS + "DeploymentSpec", "selector")),
    ), apis.deployment),
    ("apps", "ReplicaSet"): Printer((
        NAME, Column("Desired", "integer", Doc(_APPS + "ReplicaSetSpec", "replicas")),
        Column("Current", "integer", Doc(_APPS + "ReplicaSetStatus", "replicas")),
        Column("Ready", "integer", Doc(_APPS + "ReplicaSetStatus", "readyReplicas")), AGE,
        CONTAINERS, IMAGES, _selector(Doc(_APPS + "ReplicaSetSpec", "selector")),
    ), apis.replica_set),
    ("apps", "StatefulSet"): Printer((NAME, Column("Ready", "string", "Number of the pod with ready state"), AGE,
                                      CONTAINERS, IMAGES), apis.stateful_set),
    ("apps", "DaemonSet"): Printer((
        NAME, Column("Desired", "integer", Doc(_APPS + "DaemonSetStatus", "desiredNumberScheduled")),
        Column("Current", "integer", Doc(_APPS + "DaemonSetStatus", "currentNumberScheduled")),
        Column("Ready", "integer", Doc(_APPS + "DaemonSetStatus", "numberReady")),
        Column("Up-to-date", "integer", Doc(_APPS + "DaemonSetStatus", "updatedNumberScheduled")),
        Column("Available", "integer", Doc(_APPS + "DaemonSetStatus", "numberAvailable")),
        Column("Node Selector", "string", Doc(_CORE + "PodSpec", "nodeSelector")), AGE,
        CONTAINERS, IMAGES, _selector(Doc(_APPS + "DaemonSetSpec", "selector")),
    ), apis.daemon_set),
    ("apps", "ControllerRevision"): Printer((
        NAME, Column("Controller", "string", "Controller of the object"),
        Column("Revision", "string", Doc(_APPS + "ControllerRevision", "revision")), AGE,
    ), apis.controller_revision),
    ("batch", "Job"): Printer((
        NAME, Column("Status", "string", "Status of the job."),
        Column("Completions", "string", Doc("io.k8s.api.batch.v1.JobStatus", "succeeded")),
        Column("Duration", "string", "Time required to complete the job."), AGE,
        CONTAINERS, IMAGES, _selector(Doc("io.k8s.api.batch.v1.JobSpec", "selector")),
    ), apis.job),
    ("batch", "CronJob"): Printer((
        NAME, Column("Schedule", "string", Doc("io.k8s.api.batch.v1.CronJobSpec", "schedule")),
        Column("Timezone", "string", Doc("io.k8s.api.batch.v1.CronJobSpec", "timeZone")),
        Column("Suspend", "boolean", Doc("io.k8s.api.batch.v1.CronJobSpec", "suspend")),
        Column("Active", "integer", Doc("io.k8s.api.batch.v1.CronJobStatus", "active")),
        Column("Last Schedule", "string", Doc("io.k8s.api.batch.v1.CronJobStatus", "lastScheduleTime")), AGE,
        CONTAINERS, IMAGES, _selector(Doc("io.k8s.api.batch.v1.JobSpec", "selector")),
    ), apis.cron_job),
    ("autoscaling", "HorizontalPodAutoscaler"): Printer((
        NAME, Column("Reference", "string", Doc("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec",
                                                "scaleTargetRef")),
        Column("Targets", "string", Doc("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics")),
        Column("MinPods", "string", Doc("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "minReplicas")),
        Column("MaxPods", "string", Doc("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "maxReplicas")),
        Column("Replicas", "string", Doc("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
                                         "currentReplicas")), AGE,
    ), apis.hpa),
    ("networking.k8s.io", "Ingress"): Printer((
        NAME, Column("Class", "string", "The name of the IngressClass resource that should be used for additional "
                                        "configuration"),
        Column("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
        Column("Address", "string", "Address is a list containing ingress points for the load-balancer"),
        Column("Ports", "string", "Ports of TLS configurations that open"), AGE,
    ), apis.ingress),
    ("networking.k8s.io", "IngressClass"): Printer((
        NAME, Column("Controller", "string", "Controller that is responsible for handling this class"),
        Column("Parameters", "string", "A reference to a resource with additional parameters"), AGE,
    ), apis.ingress_class),
    ("networking.k8s.io", "NetworkPolicy"): Printer((
        NAME, Column("Pod-Selector", "string", Doc("io.k8s.api.networking.v1.NetworkPolicySpec", "podSelector")), AGE,
    ), apis.network_policy),
    ("policy", "PodDisruptionBudget"): Printer((
        NAME, Column("Min Available", "string", "The minimum number of pods that must be available."),
        Column("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
        Column("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."), AGE,
    ), apis.pdb),
    ("scheduling.k8s.io", "PriorityClass"): Printer((
        NAME, Column("Value", "integer", Doc("io.k8s.api.scheduling.v1.PriorityClass", "value")),
        Column("Global-Default", "boolean", Doc("io.k8s.api.scheduling.v1.PriorityClass", "globalDefault")), AGE,
        Column("PreemptionPolicy", "string", Doc("io.k8s.api.scheduling.v1.PriorityClass", "preemptionPolicy"), 1),
    ), apis.priority_class),
    ("storage.k8s.io", "StorageClass"): Printer((
        NAME, Column("Provisioner", "string", Doc("io.k8s.api.storage.v1.StorageClass", "provisioner")),
        Column("ReclaimPolicy", "string", Doc("io.k8s.api.storage.v1.StorageClass", "reclaimPolicy")),
        Column("VolumeBindingMode", "string", Doc("io.k8s.api.storage.v1.StorageClass", "volumeBindingMode")),
        Column("AllowVolumeExpansion", "string", Doc("io.k8s.api.storage.v1.StorageClass", "allowVolumeExpansion")),
        AGE,
    ), apis.storage_class),
    ("storage.k8s.io", "CSIDriver"): Printer((
        NAME, *(Column(n, t, Doc("io.k8s.api.storage.v1.CSIDriverSpec", f)) for n, t, f in (
            ("AttachRequired", "boolean", "attachRequired"), ("PodInfoOnMount", "boolean", "podInfoOnMount"),
            ("StorageCapacity", "boolean", "storageCapacity"), ("TokenRequests", "string", "tokenRequests"),
            ("RequiresRepublish", "boolean", "requiresRepublish"), ("Modes", "string", "volumeLifecycleModes"))),
        AGE,
    ), apis.csi_driver),
    ("storage.k8s.io", "CSINode"): Printer((
        NAME, Column("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node"), AGE,
    ), apis.csi_node),
    ("storage.k8s.io", "VolumeAttachment"): Printer((
        NAME, Column("Attacher", "string", Doc("io.k8s.api.storage.v1.VolumeAttachmentSpec", "attacher"), 0, "name"),
        Column("PV", "string", Doc("io.k8s.api.storage.v1.VolumeAttachmentSource", "persistentVolumeName")),
        Column("Node", "string", Doc("io.k8s.api.storage.v1.VolumeAttachmentSpec", "nodeName")),
        Column("Attached", "boolean", Doc("io.k8s.api.storage.v1.VolumeAttachmentStatus", "attached")), AGE,
    ), apis.volume_attachment),
    ("discovery.k8s.io", "EndpointSlice"): Printer((
        NAME, Column("AddressType", "string", Doc("io.k8s.api.discovery.v1.EndpointSlice", "addressType")),
        Column("Ports", "string", Doc("io.k8s.api.discovery.v1.EndpointSlice", "ports")),
        Column("Endpoints", "string", Doc("io.k8s.api.discovery.v1.EndpointSlice", "endpoints")), AGE,
    ), apis.endpoint_slice),
    ("node.k8s.io", "RuntimeClass"): Printer((
        NAME, Column("Handler", "string", Doc("io.k8s.api.node.v1.RuntimeClass", "handler")), AGE,
    ), apis.runtime_class),
    ("certificates.k8s.io", "CertificateSigningRequest"): Printer((
        NAME, AGE,
        Column("SignerName", "string", Doc("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "signerName")),
        Column("Requestor", "string", Doc("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "request")),
        Column("RequestedDuration", "string", Doc("io.k8s.api.certificates.v1.CertificateSigningRequestSpec",
                                                  "expirationSeconds")),
        Column("Condition", "string", Doc("io.k8s.api.certificates.v1.CertificateSigningRequestStatus",
                                          "conditions")),
    ), apis.csr),
    ("coordination.k8s.io", "Lease"): Printer((
        NAME, Column("Holder", "string", "holderIdentity contains the identity of the holder of a current lease."),
        AGE,
    ), apis.lease),
    (_RBAC, "RoleBinding"): Printer(_bindings(_RB_ROLE, "roleBinding"), apis.binding),
    (_RBAC, "ClusterRoleBinding"): Printer(_bindings(_CRB_ROLE, "clusterRoleBinding"), apis.binding),
    (_RBAC, "Role"): DEFAULT_CONVERTOR,
    (_RBAC, "ClusterRole"): DEFAULT_CONVERTOR,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): DEFAULT_CONVERTOR,
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"): Printer((
        NAME, Column("PriorityLevel", "string", Doc(_FS_SPEC, "priorityLevelConfiguration")),
        Column("MatchingPrecedence", "string", Doc(_FS_SPEC, "matchingPrecedence")),
        Column("DistinguisherMethod", "string", Doc(_FS_SPEC, "distinguisherMethod")), AGE,
        Column("MissingPL", "string", "indicates if the referenced priority level is missing"),
    ), apis.flow_schema),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"): Printer((
        NAME, Column("Type", "string", Doc(_PL_SPEC, "type")),
        Column("NominalConcurrencyShares", "string", Doc(_PL_LIMITED, "nominalConcurrencyShares")),
        Column("Queues", "string", Doc(_PL_QUEUING, "queues")),
        Column("HandSize", "string", Doc(_PL_QUEUING, "handSize")),
        Column("QueueLengthLimit", "string", Doc(_PL_QUEUING, "queueLengthLimit")), AGE,
    ), apis.priority_level),
    ("apiregistration.k8s.io", "APIService"): Printer((
        NAME, Column("Service", "string", "The reference to the service that hosts this API endpoint."),
        Column("Available", "string", "Whether this service is available."), AGE,
    ), apis.api_service),
}


def printer_for(group: str, kind: str) -> Printer | None:
    """The built-in printer of a kind; None when the kind has none (custom resources and kinds
    printed like them: Name + Age, built by the caller)."""
    return PRINTERS.get((group, kind))
