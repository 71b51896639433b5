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
{{- /* never the namespace's "default" account: the RoleBinding would grant it the Role */ -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false: the controller runs as (and the chart's RoleBindings bind) that existing account, never the namespace's default one" .Values.serviceAccount.name }}
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
{{- /* with a password: named, for the kubelet to put in from the Secret (secretKeyRef) */ -}}
{{- $auth := ternary ":$(KUBETASK_REDIS_PASSWORD)@" "" (not (empty .Values.redis.auth.existingSecret)) }}
{{- printf "redis://%s%s.%s.svc:%d/0" $auth (include "kubetask.redisName" .) .Release.Namespace (int .Values.redis.service.port) }}
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
The Redis settings of the settings ConfigMap. A password never is in it: the in-chart
Redis's comes from redis.auth.existingSecret (the URLs name it as $(KUBETASK_REDIS_PASSWORD)),
an external Redis's URLs with their passwords from redis.external.existingSecret.
*/}}
{{- define "kubetask.redisSettings" -}}
{{- $external := .Values.redis.external }}
{{- if and (not .Values.redis.enabled) $external.existingSecret }}
KUBETASK_TASK_REDIS_URL_SECRET: {{ dict "name" $external.existingSecret "key" (default $external.existingSecretUrlKey $external.existingSecretTaskUrlKey) | toJson | quote }}
{{- else }}
{{- if not .Values.redis.enabled }}
{{- range list $external.url $external.taskUrl }}
{{- if regexMatch "^rediss?://[^/@]*:[^/@]*@" . }}
{{- fail "redis.external: a URL with a password belongs in a Secret (redis.external.existingSecret), not in values and the settings ConfigMap" }}
{{- end }}
{{- end }}
{{- end }}
{{- if not (and .Values.redis.enabled .Values.redis.auth.existingSecret) }}
KUBETASK_REDIS_URL: {{ include "kubetask.redisUrl" . | quote }}
{{- end }}
KUBETASK_TASK_REDIS_URL: {{ include "kubetask.taskRedisUrl" . | quote }}
{{- if and .Values.redis.enabled .Values.redis.auth.existingSecret }}
KUBETASK_TASK_REDIS_PASSWORD_SECRET: {{ dict "name" .Values.redis.auth.existingSecret "key" .Values.redis.auth.existingSecretKey | toJson | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The controller's settings that come from Secrets (secretKeyRef: the chart never sees them):
the Redis password or URL, the webhooks, the webhook signing key, the SMTP password.
*/}}
{{- define "kubetask.secretEnv" -}}
{{- if and .Values.redis.enabled .Values.redis.auth.existingSecret }}
- name: KUBETASK_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.auth.existingSecret | quote }}
      key: {{ .Values.redis.auth.existingSecretKey | quote }}
- name: KUBETASK_REDIS_URL
  value: {{ include "kubetask.redisUrl" . | quote }}
{{- else if and (not .Values.redis.enabled) .Values.redis.external.existingSecret }}
- name: KUBETASK_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.existingSecret | quote }}
      key: {{ .Values.redis.external.existingSecretUrlKey | quote }}
{{- end }}
{{- range $name, $ref := dict "KUBETASK_WEBHOOKS" .Values.notifications.webhooksFrom "KUBETASK_WEBHOOK_SECRET" .Values.notifications.signing "KUBETASK_SMTP_PASSWORD" .Values.notifications.smtp.password }}
{{- if $ref.existingSecret }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.existingSecret | quote }}
      key: {{ $ref.existingSecretKey | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Refuse, at install, an artifacts claim that cannot bind: ReadWriteMany asked of a StorageClass
(the named one, else the cluster's default) whose provisioner offers only ReadWriteOnce. The
claim would stay Pending and every task pod with it. `lookup` sees the cluster only in a real
install or upgrade; `helm template` and client dry runs skip the check.
*/}}
{{- define "kubetask.checkArtifactsStorage" -}}
{{- if and (eq .Values.artifacts.store "pvc") .Values.artifacts.pvc.create (not .Values.artifacts.pvc.existingClaim) (has "ReadWriteMany" .Values.artifacts.pvc.accessModes) }}
{{- $readWriteOnceOnly := list "rancher.io/local-path" "kubernetes.io/no-provisioner" "openebs.io/local" "topolvm.io" "pd.csi.storage.gke.io" "kubernetes.io/gce-pd" "ebs.csi.aws.com" "kubernetes.io/aws-ebs" "disk.csi.azure.com" "kubernetes.io/azure-disk" }}
{{- $class := dict }}
{{- if .Values.artifacts.pvc.storageClass }}
{{- $class = lookup "storage.k8s.io/v1" "StorageClass" "" .Values.artifacts.pvc.storageClass }}
{{- else }}
{{- range (lookup "storage.k8s.io/v1" "StorageClass" "" "").items }}
{{- if eq (index (.metadata.annotations | default dict) "storageclass.kubernetes.io/is-default-class") "true" }}
{{- $class = . }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $class (has $class.provisioner $readWriteOnceOnly) }}
{{- fail (printf "artifacts.pvc.accessModes asks for ReadWriteMany, but StorageClass %q (provisioner %s) offers only ReadWriteOnce: the artifacts claim would stay Pending, and every task pod with it. Use object storage (artifacts.store=minio or s3), artifacts.pvc.accessModes=[ReadWriteOnce] (every task then runs where the volume is), a StorageClass that offers ReadWriteMany (artifacts.pvc.storageClass), or artifacts.pvc.existingClaim." $class.metadata.name $class.provisioner) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The artifacts PVC that task pods mount at /artifacts with store pvc (KUBETASK_ARTIFACTS_CLAIM).
*/}}
{{- define "kubetask.artifactsClaim" -}}
{{- if .Values.artifacts.pvc.existingClaim }}
{{- .Values.artifacts.pvc.existingClaim }}
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

{{/*
The tokens file (KUBETASK_TOKENS_FILE): the Secret holding it, its key, where it is mounted.
*/}}
{{- define "kubetask.tokensSecretName" -}}
{{- default (include "kubetask.suffixed" (dict "ctx" . "suffix" "tokens")) .Values.auth.existingSecret }}
{{- end }}

{{- define "kubetask.tokensSecretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}tokens.json{{ end }}
{{- end }}

{{- define "kubetask.tokensDir" -}}
/etc/kubetask/auth
{{- end }}

{{/*
The tokens file of the Secret the chart creates: auth.tokens; else the one it generated at
install (read back on upgrade); else one new admin token for the tenant "default".
*/}}
{{- define "kubetask.tokensJson" -}}
{{- include "kubetask.tokensJsonFrom" (dict "ctx" . "existing" (lookup "v1" "Secret" .Release.Namespace (include "kubetask.tokensSecretName" .))) }}
{{- end }}

{{/*
The same, given the tokens Secret already installed (what lookup found; empty on install).
Its content is reused only when the chart generated it (annotated kubetask.dev/generated:
secret-tokens.yaml): tokens once given in auth.tokens, then removed, must not stay valid.
Call with (dict "ctx" $ "existing" SECRET).
*/}}
{{- define "kubetask.tokensJsonFrom" -}}
{{- $tokens := .ctx.Values.auth.tokens }}
{{- if $tokens }}
{{- $seen := list }}
{{- range $i, $entry := $tokens }}
{{- if has $entry.token $seen }}
{{- /* the server would refuse to start (api/auth.py); the token itself is not shown */ -}}
{{- fail (printf "auth.tokens: entry %d (tenant %q) repeats the token of an earlier entry: each token must be different" $i $entry.tenant) }}
{{- end }}
{{- $seen = append $seen $entry.token }}
{{- end }}
{{- toJson $tokens }}
{{- else }}
{{- $existing := default dict .existing }}
{{- $annotations := default dict (dig "metadata" "annotations" dict $existing) }}
{{- $data := default dict (get $existing "data") }}
{{- $old := list }}
{{- if hasKey $data "tokens.json" }}
{{- $old = get $data "tokens.json" | b64dec | fromJsonArray }}
{{- end }}
{{- /* a Secret of a chart from before the mark: reused when it is what that chart
       generated, one admin token of 40 characters for the tenant "default" */ -}}
{{- $unmarked := and (eq (len $old) 1) (eq (len (toString (get (first $old) "token"))) 40) (eq (get (first $old) "tenant") "default") (eq (get (first $old) "role") "admin") }}
{{- if and $old (or (eq (get $annotations "kubetask.dev/generated") "true") $unmarked) }}
{{- get $data "tokens.json" | b64dec }}
{{- else }}
{{- toJson (list (dict "token" (randAlphaNum 40) "tenant" "default" "role" "admin")) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The tenants' namespaces other than the release namespace, each once, sorted (a list).
*/}}
{{- define "kubetask.tenantNamespaces" -}}
{{- $namespaces := list }}
{{- range $tenant, $namespace := .Values.tenants.namespaces }}
{{- if ne $namespace $.Release.Namespace }}
{{- $namespaces = append $namespaces $namespace }}
{{- end }}
{{- end }}
{{- toJson ($namespaces | uniq | sortAlpha) }}
{{- end }}

{{/*
The controller's Role rules: exactly the calls controller/backends/kubernetes.py makes in a
namespace where it runs Jobs (the release namespace, and each tenant's).
*/}}
{{- define "kubetask.jobRules" -}}
# one Job per job request; informer list + watch; read after a 409; cancel
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "list", "watch", "delete"]
# the pods of those Jobs, for the state (pending reasons, exit codes, termination messages)
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# GET /v1/jobs/{id}/logs
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# one Event on the Job per state transition (kubectl describe job); informer list + watch
# of the Job controller's FailedCreate Events (why a Job has no pod)
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list", "watch"]
# params over 32 KiB, in a ConfigMap owned by its Job (garbage-collected with it)
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
{{- end }}

{{/*
Egress to Redis from another namespace (a tenant's task pods): the in-chart Redis in the
release namespace, or the external one.
*/}}
{{- define "kubetask.redisEgressAcross" -}}
{{- if .Values.redis.enabled }}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Release.Namespace }}
      podSelector:
        matchLabels:
          {{- include "kubetask.selectorLabels" (dict "ctx" . "component" "redis") | nindent 10 }}
  ports:
    - port: {{ .Values.redis.service.port }}
      protocol: TCP
{{- else }}
{{- include "kubetask.redisEgress" . }}
{{- end }}
{{- end }}

{{/*
Object storage (artifacts.store s3 or minio): the in-chart MinIO's name, the Secret with the
credentials (keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), the store's settings.
*/}}
{{- define "kubetask.minioName" -}}
{{- include "kubetask.suffixed" (dict "ctx" . "suffix" "minio") }}
{{- end }}

{{/*
The port the MinIO container listens on (fixed; the Service maps artifacts.minio.service.port
to it). NetworkPolicies name this one: they match the destination pod's port, not the Service's.
*/}}
{{- define "kubetask.minioContainerPort" -}}
9000
{{- end }}

{{- define "kubetask.objectStore" -}}
{{- if has .Values.artifacts.store (list "s3" "minio") }}true{{ end }}
{{- end }}

{{- define "kubetask.storeSecretName" -}}
{{- if eq .Values.artifacts.store "minio" }}
{{- include "kubetask.minioName" . }}
{{- else }}
{{- .Values.artifacts.s3.existingSecret }}
{{- end }}
{{- end }}

{{/*
The in-chart MinIO's root credentials, as JSON: those of the Secret already installed (read
back on upgrade), else new ones; made once per render (kept in .Values._minioCredentials),
so the Secret in the release namespace and its copies in tenant namespaces agree.
*/}}
{{- define "kubetask.minioCredentials" -}}
{{- if not (hasKey .Values "_minioCredentials") }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "kubetask.minioName" .) }}
{{- $data := default dict (get (default dict $existing) "data") }}
{{- $credentials := dict "AWS_ACCESS_KEY_ID" (randAlphaNum 20) "AWS_SECRET_ACCESS_KEY" (randAlphaNum 40) }}
{{- if and (hasKey $data "AWS_ACCESS_KEY_ID") (hasKey $data "AWS_SECRET_ACCESS_KEY") }}
{{- $credentials = dict "AWS_ACCESS_KEY_ID" (get $data "AWS_ACCESS_KEY_ID" | b64dec) "AWS_SECRET_ACCESS_KEY" (get $data "AWS_SECRET_ACCESS_KEY" | b64dec) }}
{{- end }}
{{- $_ := set .Values "_minioCredentials" $credentials }}
{{- end }}
{{- toJson .Values._minioCredentials }}
{{- end }}

{{/*
The generated MinIO credentials Secret, in a namespace; call with (dict "ctx" $ "namespace" NS).
*/}}
{{- define "kubetask.minioSecret" -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "kubetask.minioName" .ctx }}
  namespace: {{ .namespace }}
  labels:
    {{- include "kubetask.labels" (dict "ctx" .ctx "component" "artifacts") | nindent 4 }}
  {{- /* only the release namespace's: a tenant's copy must go with the tenant or the release */ -}}
  {{- if and .ctx.Values.artifacts.minio.persistence.keep (eq .namespace .ctx.Release.Namespace) }}
  # kept with the data: MinIO's drive holds its config sealed with these root credentials,
  # and a reinstall reads them back (lookup)
  annotations:
    helm.sh/resource-policy: keep
  {{- end }}
type: Opaque
data:
  {{- range $key, $value := include "kubetask.minioCredentials" .ctx | fromJson }}
  {{ $key }}: {{ $value | b64enc | quote }}
  {{- end }}
{{- end }}

{{/*
The artifact store's settings of the settings ConfigMap (checked here: the ConfigMap is
always rendered).
*/}}
{{- define "kubetask.artifactsSettings" -}}
{{- $a := .Values.artifacts }}
{{- if eq $a.store "pvc" }}
{{- if and (not $a.pvc.create) (not $a.pvc.existingClaim) }}
{{- fail "artifacts.pvc.existingClaim is required when artifacts.pvc.create is false: task pods mount it at /artifacts" }}
{{- end }}
KUBETASK_ARTIFACTS_CLAIM: {{ include "kubetask.artifactsClaim" . | quote }}
{{- else }}
{{- if eq $a.store "s3" }}
{{- if not (regexMatch "^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$" $a.s3.url) }}
{{- fail "artifacts.s3.url is required with artifacts.store s3: s3://bucket[/prefix]" }}
{{- end }}
{{- if not $a.s3.existingSecret }}
{{- fail "artifacts.s3.existingSecret is required with artifacts.store s3: a Secret with the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" }}
{{- end }}
KUBETASK_ARTIFACTS_URL: {{ $a.s3.url | quote }}
{{- with $a.s3.endpoint }}
KUBETASK_S3_ENDPOINT: {{ . | quote }}
{{- end }}
{{- with $a.s3.region }}
KUBETASK_S3_REGION: {{ . | quote }}
{{- end }}
{{- else }}
KUBETASK_ARTIFACTS_URL: {{ printf "s3://%s" $a.minio.bucket | quote }}
KUBETASK_S3_ENDPOINT: {{ printf "http://%s.%s.svc:%d" (include "kubetask.minioName" .) .Release.Namespace (int $a.minio.service.port) | quote }}
KUBETASK_S3_REGION: {{ $a.minio.region | quote }}
{{- end }}
KUBETASK_S3_TIMEOUT_S: {{ $a.requestTimeoutS | quote }}
KUBETASK_S3_READ_IDLE_S: {{ $a.readIdleS | quote }}
{{- /* no shared volume: the tasks stage through the store */}}
KUBETASK_ARTIFACTS_CLAIM: ""
KUBETASK_TASK_S3_CREDENTIALS_SECRET: {{ include "kubetask.storeSecretName" . | quote }}
{{- end }}
{{- end }}

{{/*
The controller's credentials for object storage, from the store's Secret (secretKeyRef).
*/}}
{{- define "kubetask.storeEnv" -}}
{{- if include "kubetask.objectStore" . }}
{{- range $key := list "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ include "kubetask.storeSecretName" $ | quote }}
      key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}

{{/*
NetworkPolicy egress to object storage: the in-chart MinIO (in the release namespace), or
the user's store (artifacts.s3.to / ports). Nothing with store pvc. Call with
(dict "ctx" $ "across" BOOL): across, from a tenant's namespace.
*/}}
{{- define "kubetask.storeEgress" -}}
{{- $a := .ctx.Values.artifacts }}
{{- if eq $a.store "minio" }}
- to:
    - podSelector:
        matchLabels:
          {{- include "kubetask.selectorLabels" (dict "ctx" .ctx "component" "artifacts") | nindent 10 }}
      {{- if .across }}
      namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .ctx.Release.Namespace }}
      {{- end }}
  ports:
    - port: {{ include "kubetask.minioContainerPort" .ctx }}
      protocol: TCP
{{- else if eq $a.store "s3" }}
- to:
    {{- toYaml $a.s3.to | nindent 4 }}
  ports:
    {{- range $a.s3.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}
