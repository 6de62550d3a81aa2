{{/* Names and labels shared by every template. */}}

{{- define "switchyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "switchyard.fullname" -}}
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

{{- define "switchyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The gateway's pods; the in-chart Redis has component "redis", so Services never mix them up. */}}
{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "switchyard.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "switchyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "switchyard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "switchyard.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "switchyard.envSecretName" -}}
{{- printf "%s-env" (include "switchyard.fullname" .) }}
{{- end }}

{{- define "switchyard.redisName" -}}
{{- printf "%s-redis" (include "switchyard.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Where the Deployment mounts the two ConfigMaps: side by side, each as a whole directory (never subPath, so
the kubelet's atomic updates reach the pod), and the config names policy files relative to itself. */}}
{{- define "switchyard.configDir" -}}/etc/switchyard/config{{- end }}
{{- define "switchyard.policyDir" -}}/etc/switchyard/policies{{- end }}

{{- define "switchyard.redisUrl" -}}
{{- if .Values.redis.inChart.enabled }}
{{- if .Values.redis.url }}
{{- fail "redis: set either redis.url (an external Redis) or redis.inChart.enabled, not both" }}
{{- end }}
{{- printf "redis://%s:6379/0" (include "switchyard.redisName" .) }}
{{- else }}
{{- .Values.redis.url }}
{{- end }}
{{- end }}

{{/* The gateway config file: the user's `config`, with what the chart owns set from the other values. */}}
{{- define "switchyard.config" -}}
{{- $server := merge (dict "host" "0.0.0.0" "port" .Values.gateway.port "workers" .Values.gateway.workers "drain_grace_s" .Values.gateway.drainGraceSeconds "drain_timeout_s" .Values.gateway.drainTimeoutSeconds) (.Values.config.server | default dict) }}
{{- $state := deepCopy (.Values.config.state | default dict) }}
{{- $redisUrl := include "switchyard.redisUrl" . }}
{{- if $redisUrl }}
{{- $_ := set $state "redis_url" $redisUrl }}
{{- end }}
{{- $policies := list }}
{{- range $name := keys .Values.policies | sortAlpha }}
{{- $policies = append $policies (printf "../%s/%s.yaml" (base (include "switchyard.policyDir" $)) $name) }}
{{- end }}
{{- $config := merge (dict "server" $server "state" $state "policies" $policies) (omit .Values.config "server" "state" "policies") }}
{{- toYaml $config }}
{{- end }}
