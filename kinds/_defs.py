"""Resource definitions: kinds are data.

One ``ResourceDef`` drives routing, discovery, validation, field selectors and storage for a kind;
per-kind behaviour that Kubernetes treats specially lives in small strategy hooks on the actor
side, keyed by ``(group, resource)``. The built-in definitions below are the kinds jetkube serves.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

from ._printers import Printer, printer_for
from ._protobuf import message_for_kind

NameRule = Literal["subdomain", "label", "path"]

_RW_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
# The namespace storage has no deletecollection (kube-apiserver answers 405 for DELETE on the
# collection): deleting every namespace, the immortal ones included, is not one request.
_NAMESPACE_VERBS = tuple(v for v in _RW_VERBS if v != "deletecollection")


class ResourceDef(msgspec.Struct, frozen=True):
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = _RW_VERBS
    # Extra selectable fields beyond metadata.name / metadata.namespace, as dotted paths into the
    # object; the writer extracts their values into every event (``Event.fields``).
    field_selectors: tuple[str, ...] = ()
    name_rule: NameRule = "subdomain"
    # False for virtual, create-only kinds answered by an actor and never stored (reviews).
    stored: bool = True
    # Subresources: name -> verbs (e.g. {"token": ("create",)} on serviceaccounts).
    subresources: dict[str, tuple[str, ...]] = {}
    # metadata.generation: 1 on create, +1 on every change outside metadata and status (the kinds
    # whose kube strategy sets it); ``generation_annotations`` also counts annotation changes
    # (kube's Deployment: they are copied to its ReplicaSets).
    generation: bool = False
    generation_annotations: bool = False
    # With a ``status`` subresource: the status a create stores whatever the client sent (kube's
    # PrepareForCreate resets it to the zero value, which JSON shows as these fields); None keeps
    # the client's status (Nodes). A kind's strategy may add to it (a Pod's qosClass).
    initial_status: dict | None = None
    # Metadata fields a write to ``/status`` may not change (kube's status strategies: the apps
    # kinds reset labels, a Pod's ownerReferences). Every field but metadata and status always is.
    status_resets_metadata: tuple[str, ...] = ()
    # The scale subresource: the replicas paths and how the label selector is read
    # (``"selector"``: a LabelSelector at spec.selector; ``"map"``: an RC's map at spec.selector).
    scale_selector: Literal["", "selector", "map"] = ""
    # Served by conversion from the storage version (group, version) of the same plural; empty:
    # this definition is the storage version (kinds/_conversion.py holds the conversions).
    storage: tuple[str, str] = ()
    # Nothing of its own is stored: a create is the named subresource of the object of that plural
    # (same group) named by the body's metadata.name (core/v1 ``bindings`` -> ``pods/<name>/binding``).
    create_as: tuple[str, str] = ()
    # A custom resource (kinds/_crd.py): the CRD's name, its version's structural schema
    # (``openAPIV3Schema``), ``additionalPrinterColumns`` and the scale subresource's paths
    # (specReplicasPath, statusReplicasPath, labelSelectorPath). Empty for the built-in kinds.
    crd: str = ""
    schema: dict | None = None
    printer_columns: tuple[dict, ...] | None = None
    scale_paths: tuple[str, str, str] = ()
    # The schema has ``default:`` s: stored objects are defaulted when read too (as kube decodes them).
    read_defaults: bool = False
    # A CRD's conversion webhook (kinds/_crd_conversion.py ``webhook_of``): its versions are converted
    # by ConversionReviews (actors/_crd_conversion.py); None: by kinds/_conversion.py.
    conversion: dict | None = None
    # A review (``stored=False``): what the reviews actor answers a create with (actors/_reviews.py).
    review: Literal["", "self-subject", "token-review", "self-subject-access", "subject-access", "self-subject-rules"] = ""

    @property
    def has_status(self) -> bool:
        """Status is written through ``/status`` only (the spec/status split)."""
        return "status" in self.subresources
    # Lifecycle: objects of these names may never be deleted (403), e.g. the namespaces kube-apiserver
    # keeps alive (its NamespaceLifecycle admission plugin).
    immortal: tuple[str, ...] = ()

    @property
    def is_namespace(self) -> bool:
        """Objects of this kind are the namespaces: a request on one is in the namespace it names
        (kube's RequestInfo), its own labels are what a namespaceSelector matches."""
        return (self.group, self.plural) == NAMESPACES

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def protobuf_message(self) -> str | None:
        """The protobuf message of this kind (``kinds/_protobuf_tables.json``, generated from kube's
        ``generated.proto``), found by apiVersion and kind; None when it has none (custom resources)."""
        if self.crd:
            return None  # custom resources are JSON and YAML only, as kube serves them
        return message_for_kind(self.api_version, self.kind)

    @property
    def printer(self) -> Printer | None:
        """kube's Table printer of this kind (``kinds._printers``, keyed by group and kind); None
        prints it as a custom resource without printer columns (Name + Age)."""
        if self.crd:
            return None  # its additionalPrinterColumns (gateway/_table.py)
        return printer_for(self.group, self.kind)


NAMESPACES = ("", "namespaces")
"""(group, resource) of the Namespace kind: where namespaced objects' namespaces are looked up."""
IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")
DEFAULT_NAMESPACES = (*IMMORTAL_NAMESPACES, "kube-node-lease")
#: Tenants (logical clusters) are objects of this kind, cluster-scoped, in the root tenant.
TENANCY_GROUP = "tenancy.jetkube.io"
LOGICAL_CLUSTERS = (TENANCY_GROUP, "logicalclusters")
#: Each object's tenant, in a watch across tenants (kcp's ``kcp.io/cluster``).
CLUSTER_ANNOTATION = "tenancy.jetkube.io/cluster"
"""The namespaces every cluster starts with (created by the bootstrap controller)."""

_EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                 "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                 "reason", "reportingComponent", "source", "type")
_STATUS = {"status": ("get", "patch", "update")}
_SCALE = {"scale": ("get", "patch", "update")}
_ALL = ("all",)
_LABELS = ("labels",)  # the apps kinds' status strategies reset labels
# The built-in kinds of real manifests (issue 11 §2), with kube-apiserver 1.33's names, short
# names, categories, subresources and selectable fields.
_WORKLOAD_KINDS: tuple[ResourceDef, ...] = (
    ResourceDef("", "v1", "Pod", "pods", "pod", True, ("po",), _ALL,
                field_selectors=("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                                 "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
                                 "status.nominatedNodeName"),
                subresources={**_STATUS, "binding": ("create",), "eviction": ("create",),
                              "ephemeralcontainers": ("get", "patch", "update")},
                generation=True, initial_status={"phase": "Pending"},
                status_resets_metadata=("ownerReferences",)),
    ResourceDef("", "v1", "Service", "services", "service", True, ("svc",), _ALL,
                field_selectors=("spec.clusterIP", "spec.type"), subresources=_STATUS,
                initial_status={"loadBalancer": {}}),
    ResourceDef("", "v1", "Binding", "bindings", "binding", True, verbs=("create",),
                create_as=("pods", "binding")),
    ResourceDef("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",)),
    ResourceDef("", "v1", "Node", "nodes", "node", False, ("no",), field_selectors=("spec.unschedulable",),
                subresources=_STATUS),
    ResourceDef("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", False, ("pv",),
                subresources=_STATUS, initial_status={"phase": "Pending"}),
    ResourceDef("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", True,
                ("pvc",), subresources=_STATUS, initial_status={"phase": "Pending"}),
    ResourceDef("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", True,
                ("rc",), _ALL, field_selectors=("status.replicas",), subresources={**_STATUS, **_SCALE},
                generation=True, initial_status={"replicas": 0}, scale_selector="map"),
    ResourceDef("", "v1", "PodTemplate", "podtemplates", "podtemplate", True, generation=True),
    ResourceDef("", "v1", "LimitRange", "limitranges", "limitrange", True, ("limits",)),
    ResourceDef("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", True, ("quota",),
                subresources=_STATUS, initial_status={}),
    ResourceDef("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",), _ALL,
                subresources={**_STATUS, **_SCALE}, generation=True, generation_annotations=True,
                initial_status={}, scale_selector="selector", status_resets_metadata=_LABELS),
    ResourceDef("apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, ("rs",), _ALL,
                field_selectors=("status.replicas",), subresources={**_STATUS, **_SCALE}, generation=True,
                initial_status={"replicas": 0}, scale_selector="selector", status_resets_metadata=_LABELS),
    ResourceDef("apps", "v1", "StatefulSet", "statefulsets", "statefulset", True, ("sts",), _ALL,
                subresources={**_STATUS, **_SCALE}, generation=True,
                initial_status={"replicas": 0, "availableReplicas": 0}, scale_selector="selector",
                status_resets_metadata=_LABELS),
    ResourceDef("apps", "v1", "DaemonSet", "daemonsets", "daemonset", True, ("ds",), _ALL,
                subresources=_STATUS, generation=True,
                initial_status={"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                                "numberReady": 0}, status_resets_metadata=_LABELS),
    ResourceDef("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", True),
    ResourceDef("batch", "v1", "Job", "jobs", "job", True, (), _ALL, field_selectors=("status.successful",),
                subresources=_STATUS, generation=True, initial_status={}),
    ResourceDef("batch", "v1", "CronJob", "cronjobs", "cronjob", True, ("cj",), _ALL, subresources=_STATUS,
                generation=True, initial_status={}),
    ResourceDef("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
                "horizontalpodautoscaler", True, ("hpa",), _ALL, subresources=_STATUS,
                generation=True, initial_status={"desiredReplicas": 0}),
    ResourceDef("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
                "horizontalpodautoscaler", True, ("hpa",), _ALL, subresources=_STATUS,
                generation=True, initial_status={"currentReplicas": 0, "desiredReplicas": 0},
                storage=("autoscaling", "v2")),
    ResourceDef("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", True, ("ing",),
                subresources=_STATUS, generation=True, initial_status={"loadBalancer": {}}),
    ResourceDef("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", False,
                generation=True),
    ResourceDef("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", True,
                ("netpol",), generation=True),
    ResourceDef("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", True,
                ("pdb",), subresources=_STATUS, generation=True,
                initial_status={"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                                "expectedPods": 0}),
    ResourceDef("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", False, ("pc",)),
    ResourceDef("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", False, ("sc",)),
    ResourceDef("storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", False),
    ResourceDef("storage.k8s.io", "v1", "CSINode", "csinodes", "csinode", False),
    ResourceDef("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", "volumeattachment", False,
                subresources=_STATUS, initial_status={"attached": False}),
    ResourceDef("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True,
                generation=True),
    ResourceDef("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", False),
    ResourceDef("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
                "certificatesigningrequest", False, ("csr",), field_selectors=("spec.signerName",),
                subresources={**_STATUS, "approval": ("get", "patch", "update")}, initial_status={}),
    ResourceDef("events.k8s.io", "v1", "Event", "events", "event", True, ("ev",), name_rule="path",
                field_selectors=_EVENT_FIELDS, storage=("", "v1")),
    ResourceDef("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                "customresourcedefinition", False, ("crd", "crds"), ("api-extensions",), subresources=_STATUS,
                generation=True),
    ResourceDef("apiregistration.k8s.io", "v1", "APIService", "apiservices", "apiservice", False,
                categories=("api-extensions",), subresources=_STATUS, initial_status={}),
)

_RBAC = "rbac.authorization.k8s.io"
_ADMREG = "admissionregistration.k8s.io"
_EXT = ("api-extensions",)
# Admission configuration (kinds/_admissionreg.py holds their defaulting and validation).
_ADMISSION_KINDS: tuple[ResourceDef, ...] = (
    ResourceDef(_ADMREG, "v1", "MutatingWebhookConfiguration", "mutatingwebhookconfigurations",
                "mutatingwebhookconfiguration", False, categories=_EXT, generation=True),
    ResourceDef(_ADMREG, "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations",
                "validatingwebhookconfiguration", False, categories=_EXT, generation=True),
    ResourceDef(_ADMREG, "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies",
                "validatingadmissionpolicy", False, categories=_EXT, subresources=_STATUS, generation=True,
                initial_status={}),
    ResourceDef(_ADMREG, "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings",
                "validatingadmissionpolicybinding", False, categories=_EXT, generation=True),
    # Beta in kube 1.34 (on by default from 1.36); schemas from 1.34 (kinds/_schemas.py).
    ResourceDef(_ADMREG, "v1beta1", "MutatingAdmissionPolicy", "mutatingadmissionpolicies",
                "mutatingadmissionpolicy", False, categories=_EXT, generation=True),
    ResourceDef(_ADMREG, "v1beta1", "MutatingAdmissionPolicyBinding", "mutatingadmissionpolicybindings",
                "mutatingadmissionpolicybinding", False, categories=_EXT, generation=True),
)
FLOWCONTROL_GROUP = "flowcontrol.apiserver.k8s.io"
BUILTIN: tuple[ResourceDef, ...] = (
    ResourceDef("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",),
                verbs=_NAMESPACE_VERBS, field_selectors=("status.phase",), name_rule="label",
                immortal=IMMORTAL_NAMESPACES),
    ResourceDef("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
    ResourceDef("", "v1", "Secret", "secrets", "secret", True, field_selectors=("type",)),
    ResourceDef("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, ("sa",),
                subresources={"token": ("create",)}),
    ResourceDef("", "v1", "Event", "events", "event", True, ("ev",), field_selectors=_EVENT_FIELDS,
                name_rule="path"),
    ResourceDef("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
    *_WORKLOAD_KINDS,
    *_ADMISSION_KINDS,
    ResourceDef(_RBAC, "v1", "Role", "roles", "role", True, name_rule="path"),
    ResourceDef(_RBAC, "v1", "ClusterRole", "clusterroles", "clusterrole", False,
                name_rule="path"),
    ResourceDef(_RBAC, "v1", "RoleBinding", "rolebindings", "rolebinding", True,
                name_rule="path"),
    ResourceDef(_RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", False, name_rule="path"),
    ResourceDef(TENANCY_GROUP, "v1alpha1", "LogicalCluster", "logicalclusters", "logicalcluster", False,
                name_rule="label", field_selectors=("status.phase",)),
    # API Priority and Fairness (actors/_apf*.py obeys them); kube's bootstrap writes their status too.
    ResourceDef(FLOWCONTROL_GROUP, "v1", "FlowSchema", "flowschemas", "flowschema", False,
                subresources=_STATUS, name_rule="path", generation=True, initial_status={}),
    ResourceDef(FLOWCONTROL_GROUP, "v1", "PriorityLevelConfiguration", "prioritylevelconfigurations",
                "prioritylevelconfiguration", False, subresources=_STATUS, name_rule="path", generation=True,
                initial_status={}),
    ResourceDef("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
                False, verbs=("create",), stored=False, review="self-subject"),
    ResourceDef("authentication.k8s.io", "v1beta1", "SelfSubjectReview", "selfsubjectreviews",
                "selfsubjectreview", False, verbs=("create",), stored=False, review="self-subject"),
    ResourceDef("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", False,
                verbs=("create",), stored=False, review="token-review"),
    ResourceDef("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
                "selfsubjectaccessreview", False, verbs=("create",), stored=False, review="self-subject-access"),
    ResourceDef("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
                "selfsubjectrulesreview", False, verbs=("create",), stored=False, review="self-subject-rules"),
    ResourceDef("authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews",
                "subjectaccessreview", False, verbs=("create",), stored=False, review="subject-access"),
    ResourceDef("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews",
                "localsubjectaccessreview", True, verbs=("create",), stored=False, review="subject-access"),
)


#: The tenant of ``/clusters/*/``: every tenant at once (``bus.ANY_TENANT``; kcp's wildcard cluster).
ALL_TENANTS = "*"


class Registry:
    """Lookup of served resources by (group, version, plural) and by (group, plural): the kinds of
    one tenant (logical cluster).

    The registry a server builds (``Registry()``) serves the built-in kinds, shared by every tenant.
    A tenant with established CRDs has its own registry beside it (``for_tenant``): the built-in
    kinds plus that tenant's custom ones, so that a CRD serves its kind in its own tenant only and
    the same CRD name may define different kinds in two tenants. A tenant without CRDs (or an
    unknown one) is served by the shared registry: nothing is allocated per tenant until it has one.
    """

    def __init__(self, defs: tuple[ResourceDef, ...] = BUILTIN) -> None:
        self.builtin = defs
        self.tenant = ""  # "" for the shared registry; a tenant's own registry names its tenant
        # tenant -> its registry (built-in + custom kinds); shared by the shared registry and every
        # tenant's, so that any of them can look up another tenant's.
        self._tenants: dict[str, Registry] = {}
        self.shared = self
        # The every-tenants registry (``for_tenant(ALL_TENANTS)``), built on first use after a
        # change of any tenant's kinds; kept on the shared registry only.
        self._all: Registry | None = None
        # (group, plural) -> the tenants whose CRDs define it differently (the every-tenants
        # registry's only: those kinds are not served across tenants).
        self.conflicts: dict[tuple[str, str], tuple[str, ...]] = {}
        self._kinds_digest: dict[tuple[str, str], tuple[bytes, tuple[ResourceDef, ...]]] | None = None
        self._builtin_read_only: tuple[ResourceDef, ...] | None = None  # the shared registry's
        self._index(defs)

    def _index(self, defs: tuple[ResourceDef, ...]) -> None:
        by_gvr = {(d.group, d.version, d.plural): d for d in defs}
        by_gr: dict[tuple[str, str], ResourceDef] = {}
        for d in sorted(defs, key=lambda d: _version_rank(d.version)):
            by_gr.setdefault((d.group, d.plural), d)  # the preferred version
        # Swapped whole (one assignment each), so a reader on the trio loop never sees half an update.
        self._by_gvr, self._by_gr, self.defs = by_gvr, by_gr, defs

    def for_tenant(self, tenant: str) -> Registry:
        """The kinds served in ``tenant``: its own registry when it has established CRDs, else the
        shared one (built-in kinds only). ``ALL_TENANTS`` (``*``): the kinds served across every
        tenant (:meth:`_every_tenant`)."""
        if tenant == ALL_TENANTS:
            shared = self.shared
            if shared._all is None:
                shared._all = shared._every_tenant()
            return shared._all
        return self._tenants.get(tenant, self.shared)

    def _every_tenant(self) -> Registry:
        """The registry of ``/clusters/*/`` (kcp's wildcard cluster): the built-in kinds, and every
        custom resource (group, plural) whose CRD is the same in every tenant that serves it (one
        tenant's alone, or several tenants' with equal definitions: every served version's schema,
        names, scope, subresources, printer columns and conversion). A (group, plural) that two
        tenants define differently is not served (noted in ``conflicts``): one list or watch
        cannot honestly show objects of two schemas as one kind. kcp decides the same way for a
        CRD created in several workspaces (its wildcard CRD lookup answers only when every such
        CRD's spec is equal). The verbs are not compared: a terminating CRD (no create) still
        serves its kind's list and watch, the only verbs served across tenants (the definitions
        here have those only, and no subresources, so that discovery says what is served)."""
        per: dict[tuple[str, str], list[tuple[str, bytes, tuple[ResourceDef, ...]]]] = {}
        for tenant, r in sorted(self._tenants.items()):
            for gp, (digest, ds) in r._custom_kinds().items():
                per.setdefault(gp, []).append((tenant, digest, ds))
        served: list[ResourceDef] = []
        conflicts: dict[tuple[str, str], tuple[str, ...]] = {}
        for gp, defined in sorted(per.items()):
            if all(digest == defined[0][1] for _, digest, _ in defined[1:]):
                served.extend(defined[0][2])
            else:
                conflicts[gp] = tuple(t for t, _, _ in defined)
        shared = self.shared
        if shared._builtin_read_only is None:
            shared._builtin_read_only = _read_only(self.builtin)
        builtin = shared._builtin_read_only
        r = Registry.__new__(Registry)
        r.builtin, r.tenant, r._tenants, r.shared = builtin, ALL_TENANTS, self._tenants, self.shared
        r._all, r.conflicts, r._kinds_digest, r._builtin_read_only = None, conflicts, None, None
        r._index((*builtin, *_read_only(tuple(served))))
        return r

    def _custom_kinds(self) -> dict[tuple[str, str], tuple[bytes, tuple[ResourceDef, ...]]]:
        """This tenant's custom kinds by (group, plural): a digest of their definitions (verbs
        aside; keys sorted, so equal CRDs written with other key orders compare equal) and the
        definitions. Computed once per tenant registry (a registry is replaced when its CRDs change)."""
        if self._kinds_digest is None:
            kinds: dict[tuple[str, str], list[ResourceDef]] = {}
            for d in self.custom:
                kinds.setdefault((d.group, d.plural), []).append(d)
            out = {}
            for gp, ds in kinds.items():
                defs = tuple(sorted(ds, key=lambda d: d.version))
                canon = msgspec.json.encode(tuple(msgspec.structs.replace(d, verbs=()) for d in defs), order="sorted")
                out[gp] = (hashlib.sha256(canon).digest(), defs)
            self._kinds_digest = out
        return self._kinds_digest

    @property
    def custom(self) -> tuple[ResourceDef, ...]:
        """The CRD-defined kinds of this registry's tenant (none in the shared registry)."""
        return self.defs[len(self.builtin):]

    def tenants(self) -> dict[str, Registry]:
        """Every tenant that has custom kinds, with its registry (a copy: safe to iterate)."""
        return dict(self._tenants)

    def set_custom(self, tenant: str, custom: tuple[ResourceDef, ...]) -> None:
        """Serve these CRD-defined kinds beside the built-in ones in ``tenant`` (replacing its
        previous set; an empty set drops the tenant's registry): called by the projection's CRD
        view whenever an established CRD of that tenant changes. Readers holding the tenant's
        previous registry keep a consistent (older) set."""
        self.shared._all = None  # the every-tenants registry is rebuilt on its next use
        if not custom:
            self._tenants.pop(tenant, None)
            return
        r = Registry.__new__(Registry)
        r.builtin, r.tenant, r._tenants, r.shared = self.builtin, tenant, self._tenants, self.shared
        r._all, r.conflicts, r._kinds_digest, r._builtin_read_only = None, {}, None, None
        r._index((*self.builtin, *custom))
        self._tenants[tenant] = r

    def get(self, group: str, version: str, plural: str) -> ResourceDef | None:
        return self._by_gvr.get((group, version, plural))

    def storage_of(self, d: ResourceDef) -> ResourceDef:
        """The definition ``d`` is stored as (itself, unless it is served by conversion)."""
        if not d.storage:
            return d
        return self._by_gvr.get((*d.storage, d.plural), d)

    def by_resource(self, group: str, plural: str) -> ResourceDef | None:
        return self._by_gr.get((group, plural))

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions per group, preferred first (v1 before v1beta1 before v1alpha1)."""
        out: dict[str, list[str]] = {}
        for d in sorted(self.defs, key=lambda d: _version_rank(d.version)):
            out.setdefault(d.group, [])
            if d.version not in out[d.group]:
                out[d.group].append(d.version)
        return out


def _read_only(defs: tuple[ResourceDef, ...]) -> tuple[ResourceDef, ...]:
    """``defs`` as served across tenants: list and watch only, no subresources (discovery says so);
    kinds that cannot be listed (reviews, bindings) are left out."""
    out = []
    for d in defs:
        verbs = tuple(v for v in d.verbs if v in ("list", "watch"))
        if verbs:
            out.append(msgspec.structs.replace(d, verbs=verbs, subresources={}))
    return tuple(out)


def _version_rank(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA before beta before alpha, higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if m is None:
        return (3, 0, 0)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0))


# Selectable fields whose value kube formats from a Go zero value when the field is unset (a bool
# "false", a count "0"), or reads from another field (a Job's status.successful is status.succeeded).
_FIELD_SOURCES = {
    "spec.hostNetwork": ("spec.hostNetwork", "false"),
    "spec.unschedulable": ("spec.unschedulable", "false"),
    "status.replicas": ("status.replicas", "0"),
    "status.successful": ("status.succeeded", "0"),
}


def field_value(obj: dict, path: str) -> str:
    """The string value at a dotted path, "" when missing (as Kubernetes field labels do; a bool or
    count kube formats from its zero value).

    ``source`` on events is the apiserver's special case: ``source.component``.
    """
    if path == "source":
        path = "source.component"
    path, default = _FIELD_SOURCES.get(path, (path, ""))
    cur: object = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return default
        cur = cur.get(part)
    if cur is None:
        return default
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)
