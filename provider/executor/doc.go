// Package executor runs commands inside a sandbox through a long-lived
// process (cmd/gym-executor) instead of a fresh `apptainer exec` per
// command. The executor is a dumb spawner: it runs the argv it is given,
// with the environment, cwd, stdin and optional terminal of the request,
// and reports output and exit code. It knows nothing of Apptainer.
//
// Transport: one exec (or ping) at a time per unix-socket connection, so
// "the connection closed" means "the caller is gone" and the server kills
// the exec; there is no demultiplexer and no head-of-line blocking. An exec
// without stdin or terminal may keep its connection for the caller's next
// one (keepalive.go): a new connection costs little locally, but on SLURM,
// through the holder's link, it is a TLS handshake and the holder's dial.
// Only the owner may connect: the socket is created 0600, and the server
// also checks the peer's uid (SO_PEERCRED), which holds even where the
// socket's mode is widened or its directory shared.
//
// Wire format (see proto.go): frames of 1 type byte, a 4-byte big-endian
// length and a payload, in both directions. The client opens with a request
// frame carrying the protocol version; the server answers with a hello
// (its protocol and build version, its pid) and then started / stdout /
// stderr / exit frames. The client sends stdin, stdin EOF, resize, signal
// and kill frames at any time. Stdin is credit-based (the server grants
// window bytes and returns credit as the command consumes them), so the
// server reads the connection at all times: a command that never reads its
// stdin cannot hide a caller's disconnect or a signal. Output is not
// buffered beyond one read: a slow reader blocks the server's write, the
// pipe fills, and the command blocks, so memory does not grow.
//
// Processes: the server is a child subreaper and the only waiter for its
// children (wait4(-1, WNOHANG) on every SIGCHLD), so double-forked
// grandchildren are re-parented to it and reaped. Every command runs in a process group of
// its own with GYM_EXEC_ID=<exec id> in its environment; killing an exec
// (timeout, caller gone, kill frame) SIGKILLs the group and every process
// whose environment carries the marker, repeatedly, until none is left, so
// children that called setsid or double-forked die too.
package executor
