package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sitewitness/witness/config"
)

// groupsDoc tells a document of group specs from a node configuration.
var groupsDoc = regexp.MustCompile(`(?m)^groups:`)

// Every example file shipped in deploy/ (the one set the README and
// docs/deploying.md point at) must load and validate.
func TestExamplesValidate(t *testing.T) {
	var files []string
	for _, dir := range []string{"."} {
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			// Prometheus and Grafana files are in their own formats;
			// compose/stage holds what compose-up copies in to build.
			if err == nil && d.IsDir() && (d.Name() == "prometheus" || d.Name() == "grafana" || path == "compose/stage") {
				return filepath.SkipDir
			}
			if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
				files = append(files, path)
			}
			return nil
		})
	}
	if len(files) < 4 {
		t.Fatalf("found only %d example files: %v", len(files), files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if groupsDoc.Match(data) {
				if _, err := config.ParseGroups(data); err != nil {
					t.Fatalf("group spec does not validate:\n%v", err)
				}
				return
			}
			n, err := config.LoadNode(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Validate(); err != nil {
				t.Fatalf("node config does not validate:\n%v", err)
			}
		})
	}
}
