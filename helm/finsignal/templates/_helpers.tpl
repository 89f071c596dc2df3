{{/* Chart name, truncated to the 63 characters Kubernetes allows in names. */}}
{{- define "finsignal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; also the Prometheus job label through the Service. */}}
{{- define "finsignal.fullname" -}}
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

{{- define "finsignal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "finsignal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ .Values.role }}
{{- end }}

{{- define "finsignal.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "finsignal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: finsignal
{{- end }}

{{- define "finsignal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "finsignal.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "finsignal.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.gpu.enabled }}{{ $tag = printf "%s%s" $tag .Values.gpu.imageTagSuffix }}{{ end }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* True (non-empty) when this release runs the classify stage, the one KEDA scales on input lag. */}}
{{- define "finsignal.classifies" -}}
{{- if ne .Values.role "alert" }}true{{ end }}
{{- end }}

{{- define "finsignal.kedaActive" -}}
{{- if and .Values.keda.enabled (include "finsignal.classifies" .) }}true{{ end }}
{{- end }}

{{/* Longer than the worker's own shutdown (finish batch, flush, commit), or SIGKILL loses that work. */}}
{{- define "finsignal.terminationGracePeriodSeconds" -}}
{{- $shutdown := .Values.shutdownTimeoutSeconds | float64 }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add (ceil $shutdown | int) (.Values.terminationGraceMarginSeconds | int) }}
{{- else }}
{{- $grace := .Values.terminationGracePeriodSeconds | int }}
{{- if le ($grace | float64) $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than shutdownTimeoutSeconds (%v): the pod would be killed before it flushes and commits; raise it or leave it empty" $grace .Values.shutdownTimeoutSeconds) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{- define "finsignal.kedaMaxReplicas" -}}
{{- $partitions := .Values.kafka.inputPartitions | int }}
{{- $max := $partitions }}
{{- if not (kindIs "invalid" .Values.keda.maxReplicaCount) }}
{{- $max = .Values.keda.maxReplicaCount | int }}
{{- end }}
{{- if gt $max $partitions }}
{{- fail (printf "keda.maxReplicaCount (%d) exceeds kafka.inputPartitions (%d): extra consumers would sit idle; lower it or add partitions" $max $partitions) }}
{{- end }}
{{- if lt $max (.Values.keda.minReplicaCount | int) }}
{{- fail (printf "keda.maxReplicaCount (%d) is below keda.minReplicaCount (%d)" $max (.Values.keda.minReplicaCount | int)) }}
{{- end }}
{{- $max }}
{{- end }}

{{- define "finsignal.secretDir" -}}/var/run/secrets/finsignal{{- end }}

{{/*
Worker settings as FINSIGNAL_* environment variables (the ConfigMap's data). Chart values first;
.Values.settings adds any other Settings field but may not override one the chart sets.
*/}}
{{- define "finsignal.settingsEnv" -}}
{{- $v := .Values }}
{{- $dir := include "finsignal.secretDir" . }}
{{- $env := dict
  "FINSIGNAL_ROLE" $v.role
  "FINSIGNAL_KAFKA_BOOTSTRAP" $v.kafka.bootstrap
  "FINSIGNAL_INPUT_TOPIC" $v.kafka.topics.input
  "FINSIGNAL_SIGNALS_TOPIC" $v.kafka.topics.signals
  "FINSIGNAL_ALERTS_TOPIC" $v.kafka.topics.alerts
  "FINSIGNAL_DLQ_TOPIC" $v.kafka.topics.dlq
  "FINSIGNAL_GROUP_ID" $v.kafka.groupId
  "FINSIGNAL_ALERT_GROUP_ID" $v.kafka.alertGroupId
  "FINSIGNAL_SECURITY_PROTOCOL" $v.kafka.securityProtocol
  "FINSIGNAL_REDIS_URL" $v.redis.url
  "FINSIGNAL_KB_NAMESPACE" $v.kb.namespace
  "FINSIGNAL_METRICS_HOST" "0.0.0.0"
  "FINSIGNAL_METRICS_PORT" ($v.metrics.port | toString)
  "FINSIGNAL_SHUTDOWN_TIMEOUT_S" ($v.shutdownTimeoutSeconds | toString)
  "FINSIGNAL_PROVIDER" (ternary "cuda" "cpu" $v.gpu.enabled)
}}
{{- if hasPrefix "SASL" $v.kafka.securityProtocol }}
{{- if not (and $v.kafka.sasl.mechanism $v.kafka.sasl.username $v.kafka.sasl.existingSecret) }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.mechanism, kafka.sasl.username and kafka.sasl.existingSecret (a Secret holding the password under kafka.sasl.passwordKey)" $v.kafka.securityProtocol) }}
{{- end }}
{{- $_ := set $env "FINSIGNAL_SASL_MECHANISM" $v.kafka.sasl.mechanism }}
{{- $_ := set $env "FINSIGNAL_SASL_USERNAME" $v.kafka.sasl.username }}
{{- $_ := set $env "FINSIGNAL_SASL_PASSWORD_FILE" (printf "%s/kafka-sasl/password" $dir) }}
{{- end }}
{{- if $v.kafka.tls.existingSecret }}
{{- if not (hasSuffix "SSL" $v.kafka.securityProtocol) }}
{{- fail "kafka.tls.existingSecret is set but kafka.securityProtocol is not SSL or SASL_SSL" }}
{{- end }}
{{- if $v.kafka.tls.caKey }}
{{- $_ := set $env "FINSIGNAL_SSL_CAFILE" (printf "%s/kafka-tls/ca.crt" $dir) }}
{{- end }}
{{- if ne (empty $v.kafka.tls.certKey) (empty $v.kafka.tls.keyKey) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together (mutual TLS needs both)" }}
{{- end }}
{{- if $v.kafka.tls.certKey }}
{{- $_ := set $env "FINSIGNAL_SSL_CERTFILE" (printf "%s/kafka-tls/tls.crt" $dir) }}
{{- $_ := set $env "FINSIGNAL_SSL_KEYFILE" (printf "%s/kafka-tls/tls.key" $dir) }}
{{- end }}
{{- end }}
{{- if $v.redis.existingSecret }}
{{- $_ := set $env "FINSIGNAL_REDIS_PASSWORD_FILE" (printf "%s/redis/password" $dir) }}
{{- end }}
{{- range $name, $value := $v.settings }}
{{- $key := printf "FINSIGNAL_%s" (upper $name) }}
{{- if hasKey $env $key }}
{{- fail (printf "settings.%s is set by the chart's own values (%s); use those instead" $name $key) }}
{{- end }}
{{- if has (lower $name) (list "group_instance_id" "sasl_password" "redis_password") }}
{{- fail (printf "settings.%s cannot be set here: secrets come from existingSecret values, the instance id from the pod name" $name) }}
{{- end }}
{{- $_ := set $env $key (toString $value) }}
{{- end }}
{{- range $key := keys $env | sortAlpha }}
{{ $key }}: {{ get $env $key | quote }}
{{- end }}
{{- end }}
