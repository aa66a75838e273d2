package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sitewitness/witness/cluster/clustertest"
	"github.com/sitewitness/witness/config"
	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// BenchmarkScrape10000Groups measures one scrape of a witness that holds
// 10,000 groups of two sites each, with the default aggregated verdicts.
func BenchmarkScrape10000Groups(b *testing.B) {
	reg := prometheus.NewRegistry()
	c := config.Default()
	c.Name, c.Site, c.DataDir, c.MetricsAddr = "east-1", "east", filepath.Join(b.TempDir(), "east-1"), ""
	c.RaftAddr, c.GossipAddr, c.AdminAddr = clustertest.FreeAddr(b), clustertest.FreeAddr(b), clustertest.FreeAddr(b)
	c.InitialVoters = []config.Voter{{Name: c.Name, RaftAddr: c.RaftAddr, GossipAddr: c.GossipAddr}}
	leader, err := Start(context.Background(), Options{Config: c, Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	defer leader.Close()
	for !leader.IsLeader() {
		time.Sleep(10 * time.Millisecond)
	}
	cmd := &witnessv1.PutGroupsCommand{AtUnixNano: time.Now().UnixNano(), By: "bench"}
	for i := range 10_000 {
		cmd.Specs = append(cmd.Specs, &witnessv1.GroupSpec{Name: fmt.Sprintf("g%05d", i), Sites: []*witnessv1.SiteSpec{{Name: "east"}, {Name: "west"}}})
	}
	if _, err := leader.Apply(context.Background(), cmd); err != nil {
		b.Fatal(err)
	}
	var series int
	b.ResetTimer()
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		series = 0
		for _, mf := range mfs {
			series += len(mf.GetMetric())
		}
	}
	b.ReportMetric(float64(series), "series")
}
