// Package deploy holds what an operator deploys next to witnessd: example
// configurations (checked by this package's test), the Grafana dashboards
// (grafana/dashboards, with provisioning files) and the Prometheus alert
// rules (prometheus/alerts.yml, with promtool unit tests). Queries returns
// every PromQL expression of the dashboards and rules, so that tests and
// make dashboards-check can prove them against the metrics witnessd
// exports.
package deploy
