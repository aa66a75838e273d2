package policy

// The majority rule, the only place the policy counts votes: a verdict on a
// site wins when more than half of the configured observer sites report
// it, and never on the word of one site alone, however few sites are
// configured. The sites counted are the configured ones, not those that
// happen to report now: a site that is down or cut off counts as a vote
// not given.

// minVoteSites is the fewest observer sites whose verdict decides
// anything.
const minVoteSites = 2

// votesNeeded is how many of configured observer sites must report a
// verdict for it to win: more than half of them, and at least
// minVoteSites.
func votesNeeded(configured int) int { return max(configured/2+1, minVoteSites) }

// wins reports whether a verdict that votes of configured observer sites
// report wins.
func wins(votes, configured int) bool { return votes >= votesNeeded(configured) }
