{{- define "streamgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "streamgate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "streamgate.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "streamgate.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Redis and secret-key variables, shared by the api and the worker. */}}
{{- define "streamgate.redisEnv" -}}
{{- if .Values.redis.clusterAddrs }}
- name: REDIS_CLUSTER_ADDRS
  value: {{ join "," .Values.redis.clusterAddrs | quote }}
{{- else if .Values.redis.urlSecret.name }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.urlSecret.name }}
      key: {{ .Values.redis.urlSecret.key }}
{{- else if .Values.redis.url }}
- name: REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- else }}
{{- fail "set redis.url, redis.urlSecret.name or redis.clusterAddrs: without Redis the api runs in dev mode" }}
{{- end }}
- name: STREAMGATE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.secretKey.name }}
      key: {{ .Values.secrets.secretKey.key }}
{{- end -}}
