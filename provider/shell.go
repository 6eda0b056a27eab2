package provider

// LoginShell is the command of an interactive session with no command of
// its own (gym-host shell, a PTY session of the service API): the image's
// best shell as a login shell, bash where the image has it, else sh
// (busybox and alpine images have only sh).
const LoginShell = `if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l`
