package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

const reinstateHelp = `reinstate GROUP SITE [--wait D]`

// reinstate asks the leader to turn the group's old primary at SITE into a
// streaming standby of the active site's primary, and prints each step.
func (c *cli) reinstate(args []string) error {
	var wait time.Duration
	pos, err := c.flags("reinstate", reinstateHelp, args, func(fs *flag.FlagSet) {
		fs.DurationVar(&wait, "wait", 30*time.Minute, "how long to wait for the reinstate (a base backup of a large database takes a while)")
	}, 2)
	if err != nil {
		return err
	}
	group, site := pos[0], pos[1]
	cl, done, err := c.client()
	if err != nil {
		return err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), max(wait, c.g.timeout))
	defer cancel()
	resp, err := cl.Reinstate(ctx, &witnessv1.ReinstateRequest{Group: group, Site: site, By: who()})
	if err != nil {
		return err
	}
	steps := []stepJSON{}
	for _, s := range resp.GetSteps() {
		steps = append(steps, toStep(s))
	}
	if c.g.output == "json" {
		if err := c.printJSON(map[string]any{"group": group, "site": site, "token": resp.GetToken(), "ok": resp.GetOk(), "error": resp.GetError(), "steps": steps}); err != nil {
			return err
		}
	} else {
		var rows [][]string
		for _, s := range steps {
			rows = append(rows, []string{s.Step, fmt.Sprintf("%dms", s.DurationMS), dash(s.Node), stepResult(s), dash(s.Detail)})
		}
		c.table("STEP\tTOOK\tNODE\tRESULT\tDETAIL", rows)
		if resp.GetOk() {
			fmt.Fprintf(c.stdout, "group %s: %s is a streaming standby of the active site (token %d)\n", group, site, resp.GetToken())
		}
	}
	if !resp.GetOk() {
		return errors.New("reinstate " + group + " at " + site + ": " + resp.GetError())
	}
	return nil
}
