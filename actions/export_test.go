package actions

// RetryGroups counts the groups the reconciler holds retry waits for.
func (r *Reconciler) RetryGroups() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.retry)
}
