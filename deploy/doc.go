// Package deploy holds what an operator deploys next to witnessd: example
// configurations (checked by this package's test), and later the systemd
// unit, Prometheus configuration and Grafana dashboards.
package deploy
