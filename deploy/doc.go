// Package deploy holds what it takes to run eddy outside a Go toolchain,
// and the tests that check it without a container engine:
//
//   - Dockerfile: the container image (static binary on distroless,
//     non-root). The build context is the repository root, whose
//     .dockerignore keeps it small. Checked by dockerfile_test.go.
//   - ../docker-compose.yml: Kafka, a schema registry, eddy, the event
//     generator and Prometheus on a laptop. Checked by compose_test.go
//     with the Compose Specification's own loader.
//   - kubernetes/: a kustomize base and an example overlay (StatefulSet,
//     headless Service, PodDisruptionBudget, pipeline ConfigMap). Checked
//     by kube_test.go: rendered with kustomize, decoded strictly into the
//     Kubernetes API types, held to the "restricted" Pod Security Standard.
//   - prometheus/ and grafana/: alert rules and a dashboard. Checked by
//     metrics_test.go against the metrics of a running eddy, started
//     exactly as the Kubernetes overlay configures it.
//   - pipelines/: example pipelines, embedded into the binary.
//
// docs/deploy.md is the guide; docs/scaling.md covers scaling and replay.
package deploy
