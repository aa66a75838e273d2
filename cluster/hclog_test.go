package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Raft's formatted values (hclog.Fmt) and its server structs come out as
// text an operator reads, not as Go syntax.
func TestHCLogFormatsValues(t *testing.T) {
	var b bytes.Buffer
	h := newHCLog(slog.New(slog.NewTextHandler(&b, nil)), "raft")
	servers := []raft.Server{
		{Suffrage: raft.Voter, ID: "east-1", Address: "127.0.0.1:7300"},
		{Suffrage: raft.Nonvoter, ID: "west-1", Address: "127.0.0.1:7301"},
	}
	h.Info("initial configuration", "index", 1, "servers", hclog.Fmt("%+v", servers))
	h.Warn("failed to make requestVote RPC", "target", servers[0], "percent", hclog.Fmt("%0.2f%%", 12.5))
	out := b.String()
	for _, want := range []string{
		`servers="east-1 127.0.0.1:7300 voter, west-1 127.0.0.1:7301 nonvoter"`,
		`target="east-1 127.0.0.1:7300 voter"`,
		`percent=12.50%`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "%+v") || strings.Contains(out, "Suffrage:") {
		t.Errorf("Go syntax in the log:\n%s", out)
	}
}
