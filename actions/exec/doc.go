// Package exec runs an operator's hook command at a step of a transition:
// the automatic form of a runbook line such as "start the dormant servers at
// site 2" or "stop the dump-import jobs".
//
// Run starts Hook.Command directly, without a shell, with Hook.Args. The
// command sees the daemon's environment, then Hook.Env, then the variables
// that describe the transition, which always win:
//
//	WITNESS_GROUP  the group ("app")
//	WITNESS_TOKEN  the group's fencing token, decimal ("8")
//	WITNESS_FROM   the site that was active ("east"; empty if none)
//	WITNESS_TO     the site that becomes active ("west")
//	WITNESS_STEP   the step of the transition ("fence", "promote", …)
//
// Standard input is /dev/null. Standard output and standard error are
// collected together into Result.Output, bounded by Hook.OutputLimit: the
// first and the last halves are kept and a line in the middle says how many
// bytes were dropped.
//
// The command runs in a process group of its own. When Hook.Timeout passes
// (DefaultTimeout when zero) or ctx ends, the whole group is sent SIGKILL, so
// a hook that hangs, or that left children behind that hang, never blocks the
// leader. When the command exits by itself, processes it started in the
// background are left running (a hook may start long-lived services); Run
// stops reading their output OutputGrace after the command exited.
//
// Run always returns a Result for the audit log, also with an error. Errors
// name the hook ("hook start-west: exit status 3: <last line of output>") and
// match with errors.Is: ErrExit for a non-zero exit (errors.As gives an
// *ExitError with the code), ErrTimeout, ErrStart for a command that could
// not be started, ErrInvalid for a Hook that cannot be run; when ctx ends
// first the error matches ctx.Err().
//
// Run holds no state between calls and is safe for concurrent use.
package exec
