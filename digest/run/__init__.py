"""One way through a run: who is due and what they get (planning), the outbox loop (delivery), a process's
share of a shared run (sharing), worker processes (workers), the retry policy (courier), the whole job
(pipeline), the run lock (runlock) and its progress display (progress)."""
