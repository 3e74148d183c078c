{{- /*
Names and labels shared by every template. All names are namespaced with "hotplug-agent.".
*/}}

{{- /* Chart name, overridable with nameOverride. */}}
{{- define "hotplug-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /*
Fully qualified app name: fullnameOverride, else the release name when it already contains the chart
name, else "<release>-<chart>"; truncated to 63 characters (DNS label limit).
*/}}
{{- define "hotplug-agent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- /* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "hotplug-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /* Selector labels: only the stable name and instance (never the version). */}}
{{- define "hotplug-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hotplug-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- /* The recommended labels (helm best practice + app.kubernetes.io), plus commonLabels. */}}
{{- define "hotplug-agent.labels" -}}
helm.sh/chart: {{ include "hotplug-agent.chart" . }}
{{ include "hotplug-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: kubevirt
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- /* ServiceAccount name. */}}
{{- define "hotplug-agent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hotplug-agent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- /* Image reference: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "hotplug-agent.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- /* Name of the Role / RoleBinding for the leader-election Lease. */}}
{{- define "hotplug-agent.leaderElectionName" -}}
{{- printf "%s-leader-election" (include "hotplug-agent.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /*
RBAC rules in the watched scope (ClusterRole for all namespaces, one Role per namespace with
watchNamespaces): exactly the requests the agent makes (tests/chart/test_rbac_used.py records them in an
end-to-end run and compares). list/watch of VMs, VMIs and migrations (informers); get of single VMs and
VMIs and of apps/v1 ControllerRevisions (the RestartRequired check on KubeVirt v1.5.1); create and delete
(cancel) of migrations; create of core/v1 Events (never patched: each Event is new); list/watch of Multus
NetworkAttachmentDefinitions (the network preflight; where the VMs are).
*/}}
{{- define "hotplug-agent.workloadRules" -}}
- apiGroups: ["kubevirt.io"]
  resources: ["virtualmachines", "virtualmachineinstances"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["kubevirt.io"]
  resources: ["virtualmachineinstancemigrations"]
  verbs: ["list", "watch", "create", "delete"]
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: ["k8s.cni.cncf.io"]
  resources: ["network-attachment-definitions"]
  verbs: ["list", "watch"]
{{- end }}

{{- /*
Cluster-wide rules in every layout: the KubeVirt CR (migration limits, version, workload-update methods)
and what the preflight reads about where a migration can go — Nodes (schedulable, Ready, drained,
extended resources) and Pods (the extended resources they hold on each node; a target pod can land on
any node, whatever namespace the VMs are in). Informers only: list and watch.
*/}}
{{- define "hotplug-agent.kubevirtConfigRules" -}}
- apiGroups: ["kubevirt.io"]
  resources: ["kubevirts"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["nodes", "pods"]
  verbs: ["list", "watch"]
{{- end }}

{{- /* Comma list of a string list (for HOTPLUG_AGENT_NAMESPACES / _EXCLUDE_NAMESPACES). */}}
{{- define "hotplug-agent.commaList" -}}
{{- join "," . }}
{{- end }}
