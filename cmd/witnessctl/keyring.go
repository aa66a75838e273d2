package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// errKeyring: a member did not take a keyring change.
var errKeyring = errors.New("keyring change not taken by every member")

// keyring runs witnessctl keyring list | install KEY | use KEY | remove
// KEY on every member of the cluster, in name order. Rotate a key as
// Consul and Nomad do: install the new key everywhere, use it everywhere,
// then remove the old one; each step must have reached every member
// before the next. A member that did not take it fails the command,
// naming the member, and the next step should not be run.
func (c *cli) keyring(args []string) error {
	const synopsis = "keyring list | install KEY | use KEY | remove KEY"
	var op, key string
	switch {
	case len(args) >= 1 && args[0] == "list":
		op = "list"
		args = args[1:]
	case len(args) >= 2 && (args[0] == "install" || args[0] == "use" || args[0] == "remove"):
		op, key = args[0], args[1]
		args = args[2:]
	default:
		fmt.Fprintf(c.stderr, "Usage: witnessctl %s\n", synopsis)
		return errUsage
	}
	if _, err := c.flags("keyring "+op, synopsis, args, nil, 0); err != nil {
		return err
	}
	creds, err := c.g.dialOption()
	if err != nil {
		return err
	}
	var members []*witnessv1.Member
	if err := c.call(func(ctx context.Context, cl witnessv1.AdminClient) error {
		st, err := cl.Status(ctx, &witnessv1.StatusRequest{})
		members = st.GetMembers()
		return err
	}); err != nil {
		return err
	}
	var out []*witnessv1.KeyringResponse
	var failed []string
	for _, m := range members {
		resp, err := keyringOn(c, creds, m, op, key)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %s", m.GetName(), err))
			continue
		}
		out = append(out, resp)
	}
	if c.g.output == "json" {
		enc := json.NewEncoder(c.stdout)
		for _, r := range out {
			if err := enc.Encode(map[string]any{"node": r.GetNode(), "primary": r.GetPrimary(), "keys": r.GetKeys()}); err != nil {
				return err
			}
		}
	} else {
		for _, r := range out {
			fmt.Fprintf(c.stdout, "%s  primary %s  keys %s\n", r.GetNode(), r.GetPrimary(), strings.Join(r.GetKeys(), " "))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("keyring %s: %w:\n  %s", op, errKeyring, strings.Join(failed, "\n  "))
	}
	return nil
}

func keyringOn(c *cli, creds grpc.DialOption, m *witnessv1.Member, op, key string) (*witnessv1.KeyringResponse, error) {
	if m.GetAdminAddress() == "" {
		return nil, errors.New("its admin address is not known (is it alive?)")
	}
	conn, err := grpc.NewClient(m.GetAdminAddress(), creds)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := witnessv1.NewAdminClient(conn).Keyring(ctx, &witnessv1.KeyringRequest{Op: op, Key: key})
	if err != nil {
		st := status.Convert(err)
		return nil, fmt.Errorf("%s: %s", strings.ToLower(st.Code().String()), st.Message())
	}
	return resp, nil
}
