{{/*
Expand the name of the chart.
*/}}
{{- define "kubetask.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
A default fully qualified app name, truncated at 63 characters (DNS names). If the release
name contains the chart name it is used as the full name.
*/}}
{{- define "kubetask.fullname" -}}
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

{{/*
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "kubetask.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels. Call with (dict "ctx" $ "component" "controller").
*/}}
{{- define "kubetask.labels" -}}
helm.sh/chart: {{ include "kubetask.chart" .ctx }}
{{ include "kubetask.selectorLabels" . }}
{{- if .ctx.Chart.AppVersion }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: kubetask
{{- end }}

{{/*
Selector labels. The component is part of every selector: task pods made by the controller
share app.kubernetes.io/name and app.kubernetes.io/instance with the chart's pods, and must
never be picked up by the Deployment, the Service or the PodDisruptionBudget.
Call with (dict "ctx" $ "component" "controller").
*/}}
{{- define "kubetask.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetask.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
The labels the controller puts on the task pods it creates (controller/manifests.py):
what the NetworkPolicy for tasks selects.
*/}}
{{- define "kubetask.taskSelectorLabels" -}}
app.kubernetes.io/managed-by: kubetask
app.kubernetes.io/instance: {{ include "kubetask.instance" . }}
app.kubernetes.io/component: task
{{- end }}

{{/*
The installation's label value on its Jobs (KUBETASK_INSTANCE): the release name unless set.
*/}}
{{- define "kubetask.instance" -}}
{{- default .Release.Name .Values.config.instance | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
"<fullname>-<suffix>", the full name shortened so that the whole stays within 63 characters
(or .max). Call with (dict "ctx" $ "suffix" "redis" ["max" 52]).
*/}}
{{- define "kubetask.suffixed" -}}
{{- $max := int (sub (int (default 63 .max)) (add1 (len .suffix))) }}
{{- printf "%s-%s" (include "kubetask.fullname" .ctx | trunc $max | trimSuffix "-") .suffix }}
{{- end }}

{{/*
The controller's service account.
*/}}
{{- define "kubetask.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubetask.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The task pods' service account (empty: the namespace's default).
*/}}
{{- define "kubetask.taskServiceAccountName" -}}
{{- if .Values.tasks.serviceAccount.create }}
{{- default (include "kubetask.suffixed" (dict "ctx" . "suffix" "task")) .Values.tasks.serviceAccount.name }}
{{- else }}
{{- .Values.tasks.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}; call with (dict "image" X "default" TAG).
A digest wins over a tag.
*/}}
{{- define "kubetask.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .default .image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
Redis: the in-chart StatefulSet's names, and the URLs the controller and the tasks use.
*/}}
{{- define "kubetask.redisName" -}}
{{- /* 52: a StatefulSet's name goes into its pods' controller-revision-hash label */ -}}
{{- include "kubetask.suffixed" (dict "ctx" . "suffix" "redis" "max" 52) }}
{{- end }}

{{- define "kubetask.redisUrl" -}}
{{- if .Values.redis.enabled }}
{{- printf "redis://%s.%s.svc:%d/0" (include "kubetask.redisName" .) .Release.Namespace (int .Values.redis.service.port) }}
{{- else }}
{{- required "redis.external.url is required when redis.enabled is false" .Values.redis.external.url }}
{{- end }}
{{- end }}

{{- define "kubetask.taskRedisUrl" -}}
{{- if and (not .Values.redis.enabled) .Values.redis.external.taskUrl }}
{{- .Values.redis.external.taskUrl }}
{{- else }}
{{- include "kubetask.redisUrl" . }}
{{- end }}
{{- end }}

{{/*
The artifacts PVC that task pods mount at /artifacts (KUBETASK_ARTIFACTS_CLAIM).
*/}}
{{- define "kubetask.artifactsClaim" -}}
{{- if .Values.artifacts.existingClaim }}
{{- .Values.artifacts.existingClaim }}
{{- else }}
{{- include "kubetask.suffixed" (dict "ctx" . "suffix" "artifacts") }}
{{- end }}
{{- end }}

{{/*
Request priority -> PriorityClass name, as JSON (KUBETASK_PRIORITY_CLASSES).
*/}}
{{- define "kubetask.priorityClassMap" -}}
{{- $map := dict }}
{{- range $priority, $class := .Values.priorityClasses.classes }}
{{- $_ := set $map $priority $class.name }}
{{- end }}
{{- toJson $map }}
{{- end }}

{{/*
NetworkPolicy egress rules: the cluster DNS, and Redis (in the chart, or external).
*/}}
{{- define "kubetask.dnsEgress" -}}
- to:
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 8 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}
{{- define "kubetask.redisEgress" -}}
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "kubetask.selectorLabels" (dict "ctx" . "component" "redis") | nindent 10 }}
  ports:
    - port: {{ .Values.redis.service.port }}
      protocol: TCP
{{- else }}
- to:
    {{- toYaml .Values.networkPolicy.externalRedis.to | nindent 4 }}
  ports:
    {{- range .Values.networkPolicy.externalRedis.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}
