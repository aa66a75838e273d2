package deploy_test

import (
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/sitewitness/witness/config"
)

// composeFile is the part of docker-compose.yml these tests read.
type composeFile struct {
	Services map[string]struct {
		Image         string `yaml:"image"`
		ContainerName string `yaml:"container_name"`
		Networks      map[string]struct {
			IPv4 string `yaml:"ipv4_address"`
		} `yaml:"networks"`
		Volumes []string `yaml:"volumes"`
		Ports   []string `yaml:"ports"`
	} `yaml:"services"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
}

// Sites whose witnessd the demo runs, each a compose service of that name.
var composeSites = []string{"east", "west", "tiebreak"}

// Address ranges the demo's networks must stay clear of: the integration
// harness's bridge (integration/harness/netns.go) and Docker's default
// bridge.
var reservedRanges = []netip.Prefix{
	netip.MustParsePrefix("10.231.0.0/24"),
	netip.MustParsePrefix("172.17.0.0/16"),
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	data, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// wanIP is a service's fixed address on the demo's wan network.
func wanIP(t *testing.T, c composeFile, service string) string {
	t.Helper()
	ip := c.Services[service].Networks["wan"].IPv4
	if ip == "" {
		t.Fatalf("service %s has no fixed address on the wan network", service)
	}
	return ip
}

func host(t *testing.T, addr string) string {
	t.Helper()
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return h
}

// mountOf returns the host side of the volume that service mounts at
// target, or "".
func mountOf(c composeFile, service, target string) string {
	for _, v := range c.Services[service].Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return parts[0]
		}
	}
	return ""
}

// Every witness of the demo loads its node configuration from the file
// compose mounts, listens on its own wan address, and lists the same voters
// at the addresses compose gives them.
func TestComposeWitnessConfigs(t *testing.T) {
	c := loadCompose(t)
	var wantVoters []config.Voter
	for _, s := range composeSites {
		ip := wanIP(t, c, s)
		wantVoters = append(wantVoters, config.Voter{Name: s + "-1", RaftAddr: ip + ":7300", GossipAddr: ip + ":7301"})
	}
	for _, s := range composeSites {
		t.Run(s, func(t *testing.T) {
			src := mountOf(c, s, "/etc/witness/witness.yaml")
			if src == "" {
				t.Fatalf("service %s mounts no /etc/witness/witness.yaml", s)
			}
			n, err := config.LoadNode(filepath.Join("..", src))
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Validate(); err != nil {
				t.Fatalf("%s does not validate: %v", src, err)
			}
			if n.Site != s {
				t.Errorf("%s: site %q, want %q", src, n.Site, s)
			}
			ip := wanIP(t, c, s)
			for key, addr := range map[string]string{"raft_addr": n.RaftAddr, "gossip_addr": n.GossipAddr, "admin_addr": n.AdminAddr, "metrics_addr": n.MetricsAddr} {
				if host(t, addr) != ip {
					t.Errorf("%s: %s %s is not the service's wan address %s", src, key, addr, ip)
				}
			}
			if diff := cmp.Diff(wantVoters, n.InitialVoters); diff != "" {
				t.Errorf("%s: initial_voters (-want +got):\n%s", src, diff)
			}
			// Any witness may lead and sign DNS updates: each needs the key.
			if mountOf(c, s, "/etc/witness/tsig") != "tsig" {
				t.Errorf("service %s does not mount the tsig volume at /etc/witness/tsig", s)
			}
		})
	}
}

// The group spec that the east container applies validates and names the
// compose services' addresses: BIND for the updates, each site's database
// for the probes, the actions and the DNS answers.
func TestComposeGroupSpec(t *testing.T) {
	c := loadCompose(t)
	src := mountOf(c, "east", "/etc/witness/groups.yaml")
	if src == "" {
		t.Fatal("service east mounts no /etc/witness/groups.yaml")
	}
	data, err := os.ReadFile(filepath.Join("..", src))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := config.ParseGroups(data)
	if err != nil {
		t.Fatalf("%s does not validate: %v", src, err)
	}
	if len(specs) != 1 || specs[0].GetName() != "app" {
		t.Fatalf("%s: want the one group app (the entrypoints and compose-test use it), got %d groups", src, len(specs))
	}
	g := specs[0]
	dns := g.GetActions().GetDns()
	if got, want := host(t, dns.GetServer()), wanIP(t, c, "dns"); got != want {
		t.Errorf("dns.server host %s, want the dns service's %s", got, want)
	}
	if !strings.HasPrefix(dns.GetTsigSecretFile(), "/etc/witness/tsig/") {
		t.Errorf("tsig secret_file %s is not in the tsig volume", dns.GetTsigSecretFile())
	}
	for _, site := range []string{"east", "west"} {
		ip := wanIP(t, c, site)
		for _, r := range dns.GetRecords() {
			if r.GetValues()[site] != ip {
				t.Errorf("record %s at %s: %s, want %s's address %s", r.GetName(), site, r.GetValues()[site], site, ip)
			}
		}
		u, err := url.Parse(g.GetActions().GetPostgres().GetDsn()[site])
		if err != nil || u.Hostname() != ip {
			t.Errorf("postgres dsn of %s: %q, want host %s", site, g.GetActions().GetPostgres().GetDsn()[site], ip)
		}
		if dir := g.GetActions().GetPostgres().GetDataDir()[site]; mountOf(c, site, filepath.Dir(dir)) == "" {
			t.Errorf("data_dir %s of %s is not inside a volume of the service", dir, site)
		}
	}
}

// Everything the demo makes is named for it, its networks avoid the
// harness's and Docker's, and nothing is published beyond loopback.
func TestComposeNamesNetworksPorts(t *testing.T) {
	c := loadCompose(t)
	env, err := os.ReadFile("../.env")
	if err != nil || !slices.Contains(strings.Split(string(env), "\n"), "COMPOSE_PROJECT_NAME=witness-demo") {
		t.Errorf(".env must set COMPOSE_PROJECT_NAME=witness-demo (read: %v)", err)
	}
	for name, s := range c.Services {
		if !strings.HasPrefix(s.ContainerName, "witness-demo-") {
			t.Errorf("service %s: container_name %q lacks the witness-demo- prefix", name, s.ContainerName)
		}
		if !strings.HasPrefix(s.Image, "witness-demo/") {
			t.Errorf("service %s: image %q lacks the witness-demo/ prefix", name, s.Image)
		}
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s publishes %q beyond loopback", name, p)
			}
		}
	}
	for name, n := range c.Networks {
		if len(n.IPAM.Config) != 1 {
			t.Errorf("network %s: want one fixed subnet, got %d", name, len(n.IPAM.Config))
			continue
		}
		p, err := netip.ParsePrefix(n.IPAM.Config[0].Subnet)
		if err != nil {
			t.Errorf("network %s: %v", name, err)
			continue
		}
		for _, r := range reservedRanges {
			if p.Overlaps(r) {
				t.Errorf("network %s: subnet %s overlaps %s", name, p, r)
			}
		}
	}
}

// Prometheus scrapes every witness at its metrics_addr.
func TestComposePrometheusTargets(t *testing.T) {
	data, err := os.ReadFile("compose/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(data, &prom); err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			got = append(got, st.Targets...)
		}
	}
	for _, s := range composeSites {
		n, err := config.LoadNode("compose/config/witness-" + s + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, n.MetricsAddr)
	}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("prometheus targets (-want +got):\n%s", diff)
	}
}
