{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "ecr-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. Kept to 52 characters so that suffixes such as
"-metrics" and "-selfsigned" still fit the 63 characters of a DNS label.
*/}}
{{- define "ecr-guard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ecr-guard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ecr-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ecr-guard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object, without app.kubernetes.io/component. */}}
{{- define "ecr-guard.commonLabels" -}}
helm.sh/chart: {{ include "ecr-guard.chart" . }}
{{ include "ecr-guard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: ecr-guard
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ecr-guard.labels" -}}
{{ include "ecr-guard.commonLabels" . }}
app.kubernetes.io/component: admission-webhook
{{- end }}

{{- define "ecr-guard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ecr-guard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ecr-guard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret holding tls.crt, tls.key and ca.crt; its name depends on who writes it. */}}
{{- define "ecr-guard.tlsSecretName" -}}
{{- if eq .Values.tls.mode "certManager" }}
{{- printf "%s-cert" (include "ecr-guard.fullname" .) }}
{{- else }}
{{- printf "%s-tls" (include "ecr-guard.fullname" .) }}
{{- end }}
{{- end }}

{{/* DNS names the API server uses to reach the webhook Service. */}}
{{- define "ecr-guard.serviceDnsNames" -}}
{{- $svc := include "ecr-guard.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- list (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) $svc (printf "%s.%s" $svc $ns) | toJson }}
{{- end }}

{{/*
The lookup deadline in milliseconds, from config.lookupTimeout ("3s" or "2500ms";
the schema allows only those two forms).
*/}}
{{- define "ecr-guard.lookupTimeoutMillis" -}}
{{- $t := toString .Values.config.lookupTimeout }}
{{- if hasSuffix "ms" $t }}
{{- trimSuffix "ms" $t | atoi }}
{{- else if hasSuffix "s" $t }}
{{- mul (trimSuffix "s" $t | atoi) 1000 }}
{{- else }}
{{- fail (printf "config.lookupTimeout %q: use whole seconds or milliseconds, e.g. 3s or 2500ms" $t) }}
{{- end }}
{{- end }}

{{/*
Checks across values that a JSON schema cannot express. Included by the Deployment,
so a failing check stops rendering of the whole release.
*/}}
{{- define "ecr-guard.validateValues" -}}
{{- $lookupMs := include "ecr-guard.lookupTimeoutMillis" . | atoi }}
{{- $timeoutMs := mul (int .Values.webhook.timeoutSeconds) 1000 }}
{{- if le $lookupMs 0 }}
{{- fail "config.lookupTimeout must be greater than zero" }}
{{- end }}
{{- if ge $lookupMs (sub $timeoutMs 1000) }}
{{- fail (printf "config.lookupTimeout (%s) must be less than webhook.timeoutSeconds (%ds) minus 1s, so that ecr-guard answers (and applies onLookupFailure) before the API server gives up and applies failurePolicy" .Values.config.lookupTimeout (int .Values.webhook.timeoutSeconds)) }}
{{- end }}
{{- $minGrace := add (int .Values.shutdownDelaySeconds) (int .Values.webhook.timeoutSeconds) 5 }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $minGrace) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least shutdownDelaySeconds (%d) + webhook.timeoutSeconds (%d) + 5 = %d, so that the kubelet does not kill ecr-guard while the API server still waits for a review" (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownDelaySeconds) (int .Values.webhook.timeoutSeconds) (int $minGrace)) }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (kindIs "invalid" .Values.podDisruptionBudget.minAvailable) (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable) }}
{{- fail "podDisruptionBudget: set one of minAvailable and maxUnavailable" }}
{{- end }}
{{- if eq (int .Values.containerPorts.https) (int .Values.containerPorts.metrics) }}
{{- fail "containerPorts.https and containerPorts.metrics must differ" }}
{{- end }}
{{- end }}

{{/* The audit's objects: its own name label, so that no webhook Service,
PodDisruptionBudget or NetworkPolicy selects its pod. */}}
{{- define "ecr-guard.audit.fullname" -}}
{{- printf "%s-audit" (include "ecr-guard.fullname" .) }}
{{- end }}

{{- define "ecr-guard.audit.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-audit" (include "ecr-guard.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ecr-guard.audit.labels" -}}
helm.sh/chart: {{ include "ecr-guard.chart" . }}
{{ include "ecr-guard.audit.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: ecr-guard
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: audit
{{- end }}

{{/* The audit's ServiceAccount: its own when the chart creates them (its RBAC is
not the webhook's), else the one given. */}}
{{- define "ecr-guard.audit.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- include "ecr-guard.audit.fullname" . }}
{{- else }}
{{- include "ecr-guard.serviceAccountName" . }}
{{- end }}
{{- end }}
