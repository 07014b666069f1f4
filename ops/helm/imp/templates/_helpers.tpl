{{/* Names, labels, the settings wiring and the IMP pod spec shared by api, slack and worker. */}}

{{- define "imp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "imp.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "api") */}}
{{- define "imp.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "imp.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-secrets" (include "imp.fullname" .)) -}}
{{- end -}}

{{- define "imp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "imp.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* IMP settings that are secrets (core/config.py SecretStr fields, and IMP_DB__URL which may hold a password):
     read from the Secret only, never from the ConfigMap. */}}
{{- define "imp.secretSettings" -}}
IMP_API__TOKEN IMP_API__TOKENS IMP_SLACK__BOT_TOKEN IMP_SLACK__SIGNING_SECRET IMP_SLACK__APP_TOKEN IMP_TEAMS__APP_PASSWORD IMP_MONITOR__ALERT_WEBHOOK_URL IMP_LLM__API_KEY IMP_DB__URL
{{- end -}}

{{/* Keys the Secret may hold besides IMP settings. */}}
{{- define "imp.secretExtraKeys" -}}
POSTGRES_PASSWORD MLFLOW_BACKEND_STORE_URI
{{- end -}}

{{- define "imp.postgresExternal" -}}
{{- if or .Values.postgresql.external.url .Values.postgresql.external.urlInSecret }}true{{ end -}}
{{- end -}}

{{- define "imp.chromaUrl" -}}
{{- .Values.chroma.external.url | default (printf "http://%s-chroma:8000" (include "imp.fullname" .)) -}}
{{- end -}}

{{- define "imp.mlflowUri" -}}
{{- .Values.mlflow.external.uri | default (printf "http://%s-mlflow:5000" (include "imp.fullname" .)) -}}
{{- end -}}

{{/* Settings the chart wires itself; refused in .Values.config so there is one source for each. */}}
{{- define "imp.wiredSettings" -}}
{{- $wired := list "IMP_DATA_DIR" "IMP_CHROMA__URL" "IMP_MLFLOW__TRACKING_URI" -}}
{{- if .Values.llm.enabled -}}
{{- $wired = concat $wired (list "IMP_LLM__BACKEND" "IMP_LLM__BASE_URL" "IMP_LLM__MODEL") -}}
{{- end -}}
{{- join " " $wired -}}
{{- end -}}

{{/* Fails the render with a message naming the value to fix. */}}
{{- define "imp.validate" -}}
{{- $secretNames := splitList " " (include "imp.secretSettings" .) -}}
{{- $wired := splitList " " (include "imp.wiredSettings" .) -}}
{{- range $name, $value := .Values.config -}}
{{- if not (regexMatch "^IMP_[A-Z0-9_]+$" $name) -}}
{{- fail (printf "config.%s: only IMP_* settings belong in config (upper case, e.g. IMP_SEARCH__CANDIDATES)" $name) -}}
{{- end -}}
{{- if has $name $secretNames -}}
{{- fail (printf "config.%s is a secret: put it in the Secret (existingSecret, or secrets.%s), never in config" $name $name) -}}
{{- end -}}
{{- if has $name $wired -}}
{{- fail (printf "config.%s is wired by the chart (postgresql/chroma/mlflow/llm values); remove it from config" $name) -}}
{{- end -}}
{{- if or (kindIs "map" $value) (kindIs "slice" $value) -}}
{{- fail (printf "config.%s: give a string, number or boolean (JSON lists as a quoted string)" $name) -}}
{{- end -}}
{{- end -}}
{{- $allowed := concat $secretNames (splitList " " (include "imp.secretExtraKeys" .)) -}}
{{- range $name, $_ := .Values.secrets -}}
{{- if not (has $name $allowed) -}}
{{- fail (printf "secrets.%s is not a key the chart reads; allowed: %s" $name (join ", " $allowed)) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.existingSecret -}}
{{- if not (or .Values.secrets.IMP_API__TOKEN .Values.secrets.IMP_API__TOKENS) -}}
{{- fail "the API listens beyond loopback and needs a token: set existingSecret, or secrets.IMP_API__TOKEN" -}}
{{- end -}}
{{- if and (not (include "imp.postgresExternal" .)) (not .Values.secrets.POSTGRES_PASSWORD) -}}
{{- fail "the in-chart PostgreSQL needs secrets.POSTGRES_PASSWORD (or set existingSecret, or postgresql.external.url)" -}}
{{- end -}}
{{- if and .Values.postgresql.external.urlInSecret (not .Values.secrets.IMP_DB__URL) -}}
{{- fail "postgresql.external.urlInSecret needs IMP_DB__URL in the Secret (secrets.IMP_DB__URL or existingSecret)" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.postgresql.external.url (not (hasPrefix "postgresql" .Values.postgresql.external.url)) -}}
{{- fail "postgresql.external.url must be a postgresql:// URL" -}}
{{- end -}}
{{- if and .Values.llm.enabled (not .Values.llm.modelClaim) -}}
{{- fail "llm.enabled needs llm.modelClaim: a PVC holding the model folder (the cluster cannot download models)" -}}
{{- end -}}
{{- if and .Values.metrics.prometheusRule.enabled (not .Values.metrics.prometheusRule.rules) -}}
{{- fail "metrics.prometheusRule.enabled needs metrics.prometheusRule.rules: --set-file metrics.prometheusRule.rules=ops/prometheus/rules.yml" -}}
{{- end -}}
{{- end -}}

{{/* The Host header probes send when IMP_API__ALLOWED_HOSTS is set: the API answers 400 to any other name,
     the kubelet's default (the pod IP) included. Empty when unset or "*". */}}
{{- define "imp.probeHost" -}}
{{- $raw := toString (index .Values.config "IMP_API__ALLOWED_HOSTS" | default "") | trim -}}
{{- $names := ternary (fromJsonArray $raw) (splitList "," $raw) (hasPrefix "[" $raw) -}}
{{- $first := "" -}}
{{- range $names -}}
{{- if and (not $first) (trim (toString .)) (ne (trim (toString .)) "*") -}}
{{- $first = trim (toString .) -}}
{{- end -}}
{{- end -}}
{{- $first -}}
{{- end -}}

{{- define "imp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container securityContext; (dict "readOnly" true) */}}
{{- define "imp.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .readOnly }}
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Env every IMP process gets besides the ConfigMap: each secret setting by secretKeyRef, and the database URL. */}}
{{- define "imp.env" -}}
{{- $secret := include "imp.secretName" . -}}
- name: HOME   # libraries keep caches under HOME; /tmp is the writable emptyDir
  value: /tmp
{{- range splitList " " (include "imp.secretSettings" .) }}
{{- if ne . "IMP_DB__URL" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ . }}, optional: true}
{{- end }}
{{- end }}
{{- if include "imp.postgresExternal" . }}
- name: IMP_DB__URL
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: IMP_DB__URL}
{{- else }}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: POSTGRES_PASSWORD}
# Kubernetes expands $(POSTGRES_PASSWORD) from the line above: the password never appears in a manifest.
- name: IMP_DB__URL
  value: {{ printf "postgresql://%s:$(POSTGRES_PASSWORD)@%s-postgresql:5432/%s" .Values.postgresql.username (include "imp.fullname" .) .Values.postgresql.database | quote }}
{{- end }}
{{- end -}}

{{/*
The pod spec of an IMP process: (dict "ctx" $ "component" "api" "args" (list ...) "values" .Values.api
"image" "repo:tag" "gpus" 0 "port" 8000)
*/}}
{{- define "imp.podSpec" -}}
{{- $ctx := .ctx -}}
{{- $v := .values -}}
serviceAccountName: {{ include "imp.serviceAccountName" $ctx }}
automountServiceAccountToken: false
{{- with $ctx.Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
securityContext: {{ include "imp.podSecurityContext" $ctx | nindent 2 }}
containers:
  - name: {{ .component }}
    image: {{ .image | quote }}
    imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
    command: ["imp"]   # explicit, whatever the image's ENTRYPOINT
    args: {{ toJson .args }}
    envFrom:
      - configMapRef: {name: {{ include "imp.fullname" $ctx }}-config}
    env: {{ include "imp.env" $ctx | nindent 6 }}
    {{- if .port }}
    {{- $get := dict "path" "/healthz" "port" "http" }}
    {{- with include "imp.probeHost" $ctx }}
    {{- $_ := set $get "httpHeaders" (list (dict "name" "Host" "value" .)) }}
    {{- end }}
    ports:
      - {name: http, containerPort: {{ .port }}}
    # /healthz answers 200 once the database answers; the first start loads the models before the port opens.
    startupProbe:
      httpGet: {{ toJson $get }}
      periodSeconds: 5
      failureThreshold: 60
    readinessProbe:
      httpGet: {{ toJson $get }}
      periodSeconds: 10
      timeoutSeconds: 5
    livenessProbe:
      httpGet: {{ toJson $get }}
      periodSeconds: 20
      timeoutSeconds: 5
      failureThreshold: 3
    {{- else }}
    # No port: ready when the relational store answers (the image's imp-healthcheck, as in the compose stack).
    readinessProbe:
      exec:
        command: ["imp-healthcheck", "--db"]
      periodSeconds: 30
      timeoutSeconds: 10
    {{- end }}
    securityContext: {{ include "imp.containerSecurityContext" (dict "readOnly" true) | nindent 6 }}
    resources:
      {{- $res := deepCopy ($v.resources | default dict) }}
      {{- if gt (int .gpus) 0 }}
      {{- $_ := set $res "limits" (merge (dict "nvidia.com/gpu" (int .gpus)) ($res.limits | default dict)) }}
      {{- end }}
      {{- toYaml $res | nindent 6 }}
    volumeMounts:
      - {name: data, mountPath: /data}
      - {name: tmp, mountPath: /tmp}
volumes:
  - name: data
    persistentVolumeClaim:
      claimName: {{ $ctx.Values.persistence.existingClaim | default (printf "%s-data" (include "imp.fullname" $ctx)) }}
  - name: tmp
    emptyDir: {}
{{- with $v.nodeSelector }}
nodeSelector: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations: {{ toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity: {{ toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod annotations that roll the pods when the settings change. */}}
{{- define "imp.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if not .Values.existingSecret }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}
{{- end -}}
