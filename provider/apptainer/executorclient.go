package apptainer

// newExecutorClient makes the client of the executor listening on socket.
// Nil until the executor package is wired in: sandboxes then start none.
var newExecutorClient func(socket string) executorClient
