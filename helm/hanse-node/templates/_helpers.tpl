{{/* Names, labels and the rendered node config. */}}

{{- define "hanse-node.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hanse-node.fullname" -}}
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

{{/* Name of the ClusterIP Service for management, health, metrics (and SuperLink control). */}}
{{- define "hanse-node.internalServiceName" -}}
{{- printf "%s-internal" (include "hanse-node.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "hanse-node.headlessServiceName" -}}
{{- printf "%s-headless" (include "hanse-node.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "hanse-node.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hanse-node.instanceLabels" -}}
app.kubernetes.io/name: {{ include "hanse-node.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selects the node pods only (never the `helm test` pod). */}}
{{- define "hanse-node.selectorLabels" -}}
{{ include "hanse-node.instanceLabels" . }}
app.kubernetes.io/component: node
{{- end }}

{{- define "hanse-node.commonLabels" -}}
helm.sh/chart: {{ include "hanse-node.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hanse
hanse.dev/role: {{ .Values.role }}
{{- end }}

{{- define "hanse-node.labels" -}}
{{ include "hanse-node.selectorLabels" . }}
{{ include "hanse-node.commonLabels" . }}
{{- end }}

{{- define "hanse-node.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hanse-node.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hanse-node.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "hanse-node.tlsSecretName" -}}
{{- if .Values.tls.certManager.enabled }}
{{- printf "%s-tls" (include "hanse-node.fullname" . | trunc 59 | trimSuffix "-") }}
{{- else }}
{{- .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{- define "hanse-node.nodeName" -}}
{{- default (include "hanse-node.fullname" .) .Values.node.name }}
{{- end }}

{{- define "hanse-node.isAggregator" -}}
{{- if eq .Values.role "aggregator" }}true{{ end }}
{{- end }}

{{- define "hanse-node.usesStatefulSet" -}}
{{- if eq .Values.database.type "sqlite" }}true{{ end }}
{{- end }}

{{/*
Cross-field checks the values schema cannot express clearly. Each failure says which
value to set; rendering stops before anything reaches the cluster.
*/}}
{{- define "hanse-node.validate" -}}
{{- $v := .Values }}
{{- if not $v.node.participantId }}
{{- fail "node.participantId: required: the node's participant id, an absolute URI such as urn:hanse:city-a, equal to the URI SAN of its certificate" }}
{{- end }}
{{- if and $v.tls.certManager.enabled $v.tls.existingSecret }}
{{- fail "tls: set tls.existingSecret or tls.certManager.enabled, not both" }}
{{- end }}
{{- if not (or $v.tls.certManager.enabled $v.tls.existingSecret) }}
{{- fail "tls: the node needs a certificate: set tls.existingSecret (a kubernetes.io/tls Secret) or tls.certManager.enabled=true with tls.certManager.issuerRef.name" }}
{{- end }}
{{- if and $v.tls.certManager.enabled (not $v.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef.name: name the cert-manager Issuer or ClusterIssuer that signs node certificates" }}
{{- end }}
{{- if not $v.management.adminToken.existingSecret }}
{{- fail "management.adminToken.existingSecret: name an existing Secret holding the admin token (see values.yaml for a kubectl command)" }}
{{- end }}
{{- if eq $v.database.type "postgresql" }}
{{- if not $v.database.postgresql.existingSecret }}
{{- fail "database.postgresql.existingSecret: with database.type=postgresql, name the Secret holding the database URL" }}
{{- end }}
{{- if and $v.networkPolicy.enabled (not (or $v.networkPolicy.egress.database.cidrs $v.networkPolicy.egress.database.to)) }}
{{- fail "networkPolicy.egress.database: with PostgreSQL and networkPolicy.enabled, give cidrs or to (NetworkPolicy peers) so the node may reach the database" }}
{{- end }}
{{- end }}
{{- if and (eq $v.database.type "sqlite") (ne (int $v.replicaCount) 1) }}
{{- fail "replicaCount: SQLite allows exactly one replica; use database.type=postgresql for more" }}
{{- end }}
{{- if and (eq $v.role "aggregator") (ne (int $v.replicaCount) 1) }}
{{- fail "replicaCount: an aggregator runs one Flower SuperLink and needs exactly one replica" }}
{{- end }}
{{- if and $v.ingress.enabled (not $v.ingress.host) }}
{{- fail "ingress.host: set the public host name (SNI) of the protocol API" }}
{{- end }}
{{- if and $v.ingress.fleetHost (ne $v.role "aggregator") }}
{{- fail "ingress.fleetHost: only an aggregator runs a SuperLink Fleet API" }}
{{- end }}
{{- if and $v.datasetsVolume.existingClaim $v.datasetsVolume.configMap }}
{{- fail "datasetsVolume: set existingClaim or configMap, not both" }}
{{- end }}
{{- end }}

{{/* The node config file (node/config.py format), as YAML. */}}
{{- define "hanse-node.config" -}}
{{- $v := .Values }}
{{- $host := $v.node.listenHost }}
{{- if contains ":" $host }}{{ $host = printf "[%s]" $host }}{{ end }}
{{- $protocol := dict "listen" (printf "%s:%d" $host (int $v.ports.protocol)) "max_request_bytes" (int $v.node.maxRequestBytes) }}
{{- if $v.node.advertisedAddress }}
{{- $_ := set $protocol "advertised_address" $v.node.advertisedAddress }}
{{- end }}
{{- $tls := dict "cert" "/etc/hanse/tls/tls.crt" "key" "/etc/hanse/tls/tls.key" "trust_bundle" "/etc/hanse/tls/ca.crt" }}
{{- if $v.tls.trustBundle.configMap }}
{{- $_ := set $tls "trust_bundle" "/etc/hanse/trust/ca.crt" }}
{{- end }}
{{- $database := dict "url" "sqlite:////var/lib/hanse/hanse.db" }}
{{- if eq $v.database.type "postgresql" }}
{{- $database = dict "url_file" "/etc/hanse/database/url" }}
{{- end }}
{{- $metricsListen := "" }}
{{- if $v.metrics.enabled }}
{{- $metricsListen = printf "%s:%d" $host (int $v.ports.metrics) }}
{{- end }}
{{- $peers := list }}
{{- range $v.peers }}
{{- $peer := dict "name" .name "participant_id" .participantId "address" .address }}
{{- if .fleetAddress }}
{{- $_ := set $peer "fleet_address" .fleetAddress }}
{{- end }}
{{- if .memberships }}
{{- $_ := set $peer "memberships" .memberships }}
{{- end }}
{{- $peers = append $peers $peer }}
{{- end }}
{{- $config := dict
  "node" (dict "name" (include "hanse-node.nodeName" .) "participant_id" $v.node.participantId "data_dir" "/var/lib/hanse")
  "protocol" $protocol
  "management" (dict "listen" (printf "%s:%d" $host (int $v.ports.management)) "admin_token_file" "/etc/hanse/admin/admin.token")
  "health" (dict "listen" (printf "%s:%d" $host (int $v.ports.health)))
  "metrics" (dict "listen" $metricsListen)
  "tls" $tls
  "database" $database
  "datasets" $v.datasets
  "peers" $peers
  "log" (dict "level" $v.node.log.level "format" $v.node.log.format)
}}
{{- if eq $v.role "aggregator" }}
{{- $_ := set $config "aggregator" (dict "enabled" true "listen" (printf "%s:%d" $host (int $v.superlink.fleetPort))) }}
{{- end }}
{{- $config = mustMergeOverwrite $config (deepCopy $v.extraConfig) }}
{{- toYaml $config }}
{{- end }}

{{/* Pod and container security settings shared by the node and the test pod. */}}
{{- define "hanse-node.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
fsGroup: {{ .Values.runAsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "hanse-node.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}
