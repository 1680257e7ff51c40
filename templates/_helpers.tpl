{{- define "exo-matrix-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "exo-matrix-operator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "exo-matrix-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "exo-matrix-operator.serviceAccountName" -}}
{{- default (include "exo-matrix-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "exo-matrix-operator.credentialsSecret" -}}
{{- default (printf "%s-credentials" (include "exo-matrix-operator.fullname" .)) .Values.matrix.existingSecret -}}
{{- end -}}
