// Package pipelines holds example pipelines shipped with eddy. The demo runs
// HTTPRequests; users copy the YAML files as a starting point.
package pipelines

import _ "embed"

// HTTPRequests is http-requests.yaml: three rollups of one read of HTTP
// request events: per-endpoint request count, error count and p50/p99
// latency per 10-second window (by_endpoint, with alert rules), the same
// per minute merged from those (by_endpoint_1m, chained), and requests per
// service and status class per minute (by_status_class).
//
//go:embed http-requests.yaml
var HTTPRequests []byte
