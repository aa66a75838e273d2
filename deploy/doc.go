// Package deploy holds what an operator deploys next to witnessd: example
// configurations (checked by this package's test), the Grafana dashboards
// (grafana/dashboards, with provisioning files) and the Prometheus alert
// rules (prometheus/alerts.yml, with promtool unit tests). Queries returns
// every PromQL expression of the dashboards and rules, so that tests and
// make dashboards-check can prove them against the metrics witnessd
// exports. compose/ holds what the top-level docker-compose.yml builds
// and mounts: the demo's node configurations and group spec (checked
// against docker-compose.yml by compose_test.go), Dockerfiles,
// entrypoints, and the scripts behind make compose-up and make
// compose-test.
package deploy
