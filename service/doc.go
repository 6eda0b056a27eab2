// Package service is the local service API, version 1: HTTP/1.1 with JSON
// bodies over a unix socket, so that a harness in any language drives
// sandboxes with its standard library. The plugin daemon of daemon mode
// serves it over its own provider (one server, not two); docs/api.md is
// the reference.
//
// The handlers translate between HTTP and a provider.Provider and nothing
// else: every call goes to the provider with the request's context, so a
// caller that goes away cancels its call (and the provider kills its exec).
package service

// APIVersion is the version of the API: every response says it in the
// VersionHeader, and GET /v1/info in api_version. A change that breaks a
// version-1 client gets a new version and new paths (/v2/...).
const APIVersion = 1

// VersionHeader carries APIVersion on every response.
const VersionHeader = "Gym-Api-Version"
