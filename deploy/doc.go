// Package deploy holds what an operator deploys next to witnessd: example
// configurations (checked by this package's tests) and compose/, what the
// top-level docker-compose.yml builds and mounts: the demo's node
// configurations and group spec (checked against docker-compose.yml by
// compose_test.go), Dockerfiles, entrypoints, and the scripts behind
// make compose-up and make compose-test.
package deploy
