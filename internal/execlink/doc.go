// Package execlink carries executor connections from the host that runs
// the plugin to a sandbox's executor on a SLURM compute node, without a
// SLURM step per command.
//
// The holder (the long-lived node agent of each sandbox job) listens on a
// TCP port of its node and splices every accepted connection into the
// executor's unix socket on that node. The link is mutual TLS with both
// certificates pinned, not signed by a CA:
//   - the client key is made once per state directory and stays in
//     <state_dir>/tls (0700 dir, 0600 key) on the plugin's side; the holder
//     is given only the public certificate and accepts no other;
//   - the holder makes a fresh server key in memory at start and publishes
//     its certificate in the ready file, which only the sandbox's owner can
//     write, so the plugin trusts exactly that holder.
//
// So nobody but the sandbox's owner can run a command through it, and no
// private key is ever written where a sandbox (or SLURM) can read it.
//
// Why a listener and not one long-lived `srun --overlap` step per sandbox:
// a step's stdio belongs to the process that started it, and the plugin is
// usually one process per gym-host call; keeping steps would need a relay
// process per sandbox on the submit host, another thing to leak. A TLS
// connection costs about 0.8 ms on loopback (handshake included) against
// ~150 ms for a step.
package execlink
