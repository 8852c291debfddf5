// Package pipelines holds example pipelines shipped with eddy. The demo runs
// HTTPRequests; users copy the YAML files as a starting point.
package pipelines

import _ "embed"

// HTTPRequests is http-requests.yaml: per-endpoint request count, error
// count and p50/p99 latency per 10-second window.
//
//go:embed http-requests.yaml
var HTTPRequests []byte
