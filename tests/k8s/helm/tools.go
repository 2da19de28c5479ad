//go:build tools

// Package tools pins the helm command that tests/k8s/build.sh builds.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
