//go:build unix

package probes

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the command in its own process group and makes the
// context's cancellation kill the whole group, so that children the
// command started do not outlive the check.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// killProcessGroup kills what is left of the group after the command has
// exited, such as a child it left running in the background.
func killProcessGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
